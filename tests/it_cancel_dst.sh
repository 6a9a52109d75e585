#!/bin/bash
# migr cancel on the destination (`migr cancel --ctl DEST_CTL`):
#   1. a waiting migr recv (no source yet) stops waiting: exit 0;
#   2. during pre-copy rounds (before COMMIT) the receiver stops, tells the
#      source why and never runs the guest (exit 1, "cancelled on the
#      destination"); the source resumes it (exit 1, resumed_on_source) and it
#      verifies there;
#   3. after the post-copy switch the cancel is refused with the reason (the
#      destination owns the guest) and the migration completes.
# Exit 0 pass, 1 fail, 77 skip (no usable /dev/kvm).
set -u
. "$(dirname "$0")/itlib.sh"
need_kvm
it_setup cancel-dst

SCTL=$DIR/s.ctl
start_source "$SCTL" --mem 256M --workload rate=64M

start_recv() { # NAME: migr recv on unix:DIR/NAME.sock, control socket DIR/NAME.ctl; RECV=pid
    "$MIGR" recv --listen "unix:$DIR/$1.sock" --ctl "$DIR/$1.ctl" 2>"$DIR/$1-recv.err" &
    RECV=$!
    PIDS+=("$RECV")
    wait_vmm "$RECV" "$DIR/$1.ctl" 10 || fail "$1: the receiver did not come up"
}

# 1. A waiting receiver.
start_recv wait
M cancel --ctl "$DIR/wait.ctl" >"$DIR/wait-cancel.out" 2>&1 || fail "cancel of a waiting recv: $(cat "$DIR/wait-cancel.out")"
wait_exit "$RECV" 5
rc=$?
[ $rc -eq 0 ] || fail "a waiting recv cancelled exited $rc, expected 0"
grep -q "stopped before a guest arrived" "$DIR/wait-recv.err" || fail "waiting recv: $(cat "$DIR/wait-recv.err")"
[ -e "$DIR/wait.sock" ] && fail "a cancelled waiting recv left its socket behind"
echo "ok  1. a waiting recv cancelled: it stops waiting, exit 0"

# 2. Cancel during pre-copy (256 MiB at 20 MiB/s: ~12 s of round 1).
start_recv pre
M send --ctl "$SCTL" --to "unix:$DIR/pre.sock" --max-bandwidth 20M --json >"$DIR/pre-send.out" 2>"$DIR/pre-send.err" &
SEND=$!
PIDS+=("$SEND")
for _ in $(seq 100); do
    st=$(M status --ctl "$DIR/pre.ctl" --json 2>/dev/null)
    grep -q '"bytes_received"' <<<"$st" && break
    sleep 0.05
done
sleep 1
kill -0 "$SEND" 2>/dev/null || fail "pre-copy: the migration ended before the cancel: $(cat "$DIR/pre-send.err")"
t0=$(date +%s%N)
M cancel --ctl "$DIR/pre.ctl" --json >"$DIR/pre-cancel.out" 2>&1 || fail "cancel during pre-copy: $(cat "$DIR/pre-cancel.out")"
grep -q '"cancelling":true' "$DIR/pre-cancel.out" || fail "cancel answer: $(cat "$DIR/pre-cancel.out")"
wait_exit "$RECV" 10
rrc=$?
wait_exit "$SEND" 10
src=$?
ms=$((($(date +%s%N) - t0) / 1000000))
[ $rrc -eq 1 ] || fail "pre-copy: the cancelled recv exited $rrc, expected 1"
[ $src -eq 1 ] || fail "pre-copy: send exited $src, expected 1"
num_ok "$ms < 3000" || fail "the cancel took $ms ms"
grep -q "cancelled on the destination" "$DIR/pre-recv.err" || fail "recv says: $(cat "$DIR/pre-recv.err")"
grep -q "guest running here" "$DIR/pre-recv.err" && fail "the cancelled destination ran the guest"
js=$(tail -n1 "$DIR/pre-send.out")
[ "$(json_get "$js" resumed_on_source)" = true ] || fail "pre-copy: not resumed on the source: $js"
grep -q "cancelled on the destination" "$DIR/pre-send.err" || fail "send says: $(cat "$DIR/pre-send.err")"
st=$(M status --ctl "$SCTL") || fail "no status from the source after the cancel"
[ "$(json_get "$st" running)" = true ] || fail "the source guest is not running: $st"
M verify --ctl "$SCTL" >/dev/null || fail "the source guest does not verify after the cancel"
echo "ok  2. cancel during pre-copy: both ended in $ms ms, guest verified on the source"

# 3. After the post-copy switch: refused, the migration completes.
start_recv post
M send --ctl "$SCTL" --to "unix:$DIR/post.sock" --mode postcopy --max-bandwidth 40M --json \
    >"$DIR/post-send.out" 2>"$DIR/post-send.err" &
SEND=$!
PIDS+=("$SEND")
switched=
for _ in $(seq 200); do
    st=$(M status --ctl "$SCTL" --json 2>/dev/null) || break
    grep -q '"phase":"postcopy"' <<<"$st" && { switched=1; break; }
    sleep 0.05
done
[ -n "$switched" ] || fail "post-copy: the source never reported the post-copy phase: $st"
if M cancel --ctl "$DIR/post.ctl" >"$DIR/post-cancel.out" 2>"$DIR/post-cancel.err"; then
    fail "cancel after the post-copy switch was accepted: $(cat "$DIR/post-cancel.out")"
fi
grep -q "destination owns the guest" "$DIR/post-cancel.err" || fail "refusal says: $(cat "$DIR/post-cancel.err")"
wait_exit "$SEND" 40 || fail "post-copy: send failed after the refused cancel: $(cat "$DIR/post-send.err")"
M verify --ctl "$DIR/post.ctl" >/dev/null || fail "the guest does not verify on the destination"
echo "ok  3. cancel after the post-copy switch refused ('$(head -c 90 "$DIR/post-cancel.err")...'); migrated and verified"
