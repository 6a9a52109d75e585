#!/bin/bash
# Cancellable post-copy through the CLI, for each backend (proc always, kvm
# when /dev/kvm works): the destination VMM is killed with SIGKILL while the
# guest runs there and pages are still missing; the source takes the guest
# back from the destination's last checkpoint, and the guest verifies and
# keeps running on the source. `migr cancel` does the same. Then a plain
# post-copy to a live destination completes and verifies there.
set -u
MIGR=${MIGR:-build/migr}
BACKENDS=proc
[ -r /dev/kvm ] && [ -w /dev/kvm ] && BACKENDS="proc kvm"
DIR=$(mktemp -d /tmp/migr-it-pckill.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
    rm -rf "$DIR"
}
trap cleanup EXIT
fail() { echo "FAIL ($be): $*"; for f in "$DIR"/*.log "$DIR"/*.out; do [ -f "$f" ] && { echo "--- $f"; cat "$f"; }; done; exit 1; }
writes() { "$MIGR" status --ctl "$1" | sed -n 's/.*"writes":\([0-9]*\).*/\1/p'; }

for be in $BACKENDS; do
rm -f "$DIR"/*
# proc: 512M so that post-copy lasts long enough to be killed in the middle
mem=1G; [ "$be" = proc ] && mem=512M
"$MIGR" run --backend "$be" --mem "$mem" --vcpus 2 --workload rate=64M,pattern=random,data=text --ctl "$DIR/src.ctl" 2>"$DIR/src.log" &
pids+=($!)
"$MIGR" status --ctl "$DIR/src.ctl" --wait 30 >/dev/null || fail "source VMM did not start"

rounds="1 2"; [ "$be" = proc ] && rounds=1   # proc: one kill (its 512M verifies take ~2 s each)
for round in $rounds; do
    "$MIGR" recv --listen "unix:$DIR/m$round.sock" --ctl "$DIR/dst$round.ctl" 2>"$DIR/dst$round.log" &
    dst=$!; pids+=($dst)
    for _ in $(seq 100); do [ -S "$DIR/m$round.sock" ] && break; sleep 0.05; done
    "$MIGR" send --ctl "$DIR/src.ctl" --to "unix:$DIR/m$round.sock" --mode postcopy --json >"$DIR/send$round.out" 2>&1 &
    snd=$!; pids+=($snd)
    # the destination's vCPU threads exist once HELLO arrived; post-copy starts right after
    for _ in $(seq 200); do ls /proc/$dst/task 2>/dev/null | wc -l | grep -qv '^1$' && break; sleep 0.01; done
    sleep 0.$((round * 2))
    kill -9 "$dst"
    wait "$snd"; rc=$?
    [ $rc -eq 1 ] || fail "send after the destination died: exit $rc"
    grep -q '"resumed_on_source":true' "$DIR/send$round.out" || fail "guest not resumed on the source"
    grep -q 'taken back\|keeps running on the source' "$DIR/send$round.out" || fail "no take-back message"
    echo "$be kill $round: $(grep -o '"error":"[^"]*"' "$DIR/send$round.out")"
    "$MIGR" verify --ctl "$DIR/src.ctl" || fail "verify on the source after the destination died ($round)"
    w1=$(writes "$DIR/src.ctl"); sleep 0.3; w2=$(writes "$DIR/src.ctl")
    [ "$w2" -gt "$w1" ] || fail "guest not running on the source after take-back ($w1 -> $w2)"
done

# migr cancel during post-copy: the destination stops and hands back its last checkpoint
"$MIGR" recv --listen "unix:$DIR/c.sock" --ctl "$DIR/c.ctl" 2>"$DIR/c.log" &
dst=$!; pids+=($dst)
for _ in $(seq 100); do [ -S "$DIR/c.sock" ] && break; sleep 0.05; done
"$MIGR" send --ctl "$DIR/src.ctl" --to "unix:$DIR/c.sock" --mode postcopy --json >"$DIR/c.out" 2>&1 &
snd=$!; pids+=($snd)
for _ in $(seq 200); do ls /proc/$dst/task 2>/dev/null | wc -l | grep -qv '^1$' && break; sleep 0.01; done
sleep 0.2
"$MIGR" cancel --ctl "$DIR/src.ctl" >/dev/null || fail "migr cancel refused"
wait "$snd"; rc=$?
[ $rc -eq 1 ] || fail "send after cancel: exit $rc"
grep -q 'cancelled' "$DIR/c.out" || fail "no 'cancelled' in the summary: $(cat "$DIR/c.out")"
grep -q '"resumed_on_source":true' "$DIR/c.out" || fail "guest not resumed on the source after cancel"
echo "$be cancel: $(grep -o '"error":"[^"]*"' "$DIR/c.out")"
wait "$dst"; [ $? -ne 0 ] || fail "the destination VMM should exit non-zero after a cancel"
"$MIGR" verify --ctl "$DIR/src.ctl" || fail "verify on the source after cancel"

# and a post-copy that completes
"$MIGR" recv --listen "unix:$DIR/ok.sock" --ctl "$DIR/ok.ctl" 2>"$DIR/ok.log" &
pids+=($!)
for _ in $(seq 100); do [ -S "$DIR/ok.sock" ] && break; sleep 0.05; done
"$MIGR" send --ctl "$DIR/src.ctl" --to "unix:$DIR/ok.sock" --mode postcopy --json >"$DIR/ok.out" 2>&1 || fail "post-copy"
grep -q '"mode":"cpostcopy"' "$DIR/ok.out" || fail "not a cancellable post-copy"
"$MIGR" verify --ctl "$DIR/ok.ctl" --wait 20 || fail "verify on the destination after post-copy"
"$MIGR" stop --ctl "$DIR/ok.ctl" >/dev/null
"$MIGR" stop --ctl "$DIR/src.ctl" >/dev/null 2>&1
done
exit 0
