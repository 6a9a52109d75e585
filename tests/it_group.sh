#!/bin/bash
# VM groups (seed 003): three running, dirtying guests started with
# --group move together with one joint switchover.
#  1. migr upgrade --group: every VMM is replaced (zero-copy hand-over), all
#     guests verify afterwards and run in new VMMs that are still members.
#  2. migr send --group (pre-copy) to three receivers: all verify there.
#  3. One member's new VMM refuses the guest (incompatible state format):
#     the joint switchover is aborted, every guest keeps running in its old
#     VMM and verifies, and the summary says so.
# Backend: kvm when /dev/kvm is usable, else proc (same code path).
set -u
BACKEND=proc
[ -r /dev/kvm ] && [ -w /dev/kvm ] && BACKEND=kvm
if [ -z "${MIGR_TEST_BACKEND:-}" ] && [ $BACKEND = kvm ]; then
    MIGR_TEST_BACKEND=proc "$0" || exit 1   # the proc backend first, then kvm below
fi
BACKEND=${MIGR_TEST_BACKEND:-$BACKEND}
. "$(dirname "$0")/itlib.sh"
# migr built so that its guests announce another state format (tests/newer_state.c)
NEWER=${NEWER:-$(dirname "$MIGR")/tests/migr-newer-state}
[ -x "$NEWER" ] || { echo "FAIL: $NEWER is not built (make $NEWER)"; exit 1; }
it_setup group
export MIGR_RUN_DIR=$DIR/run
verify_all() { # $1: what; then ctl paths
    local what=$1; shift
    for c in "$@"; do
        "$MIGR" verify --ctl "$c" >"$DIR/verify.out" 2>&1 || fail "$what: $c does not verify: $(cat "$DIR/verify.out")"
        "$MIGR" status --ctl "$c" | grep -q '"group":"g1"' || fail "$what: $c is no longer in group g1"
    done
}

ctls=()
for i in 1 2 3; do
    "$MIGR" run --backend $BACKEND --mem 64M --workload rate=32M,pattern=random,data=text --group g1 \
        --ctl "$DIR/vm$i.ctl" 2>"$DIR/run$i.log" &
    PIDS+=($!)
    ctls+=("$DIR/vm$i.ctl")
done
for c in "${ctls[@]}"; do "$MIGR" status --ctl "$c" --wait 20 >/dev/null || fail "VMM $c did not start"; done
"$MIGR" run --backend $BACKEND --mem 64M --group 'bad/name' --ctl "$DIR/x.ctl" 2>"$DIR/badname.err" &&
    fail "a group name with '/' was accepted"
grep -q "group name" "$DIR/badname.err" || fail "bad group name: no clear message: $(cat "$DIR/badname.err")"
sleep 0.3

# 1. joint upgrade
old=(); for c in "${ctls[@]}"; do old+=("$(pid_of "$c")"); done
out=$("$MIGR" upgrade --group g1 --json) || fail "upgrade --group: $out"
echo "$out" | grep -q '"ok":true,"members":3' || fail "upgrade --group: not 3 members ok: $out"
[ "$(echo "$out" | grep -o '"mode":"handover"' | wc -l)" = 3 ] || fail "upgrade --group: not 3 hand-overs: $out"
echo "$out" | grep -q '"group_downtime_ms":[0-9]' || fail "no group downtime: $out"
echo "upgrade: $(echo "$out" | grep -o '"group_downtime_ms":[0-9.]*')"
for i in 0 1 2; do
    p=$(pid_of "${ctls[$i]}")
    [ -n "$p" ] && [ "$p" != "${old[$i]}" ] || fail "member ${ctls[$i]} still in VMM ${old[$i]}"
done
verify_all "after upgrade --group" "${ctls[@]}"

# 2. joint pre-copy migration to three receivers (their VMMs join g1 too)
rpids=()
for i in 1 2 3; do
    "$MIGR" recv --listen "unix:$DIR/in-vm$i.sock" --ctl "$DIR/dst$i.ctl" --group g1 --timeout 60 \
        2>"$DIR/recv$i.log" &
    rPIDS+=($!); PIDS+=($!)
done
for i in 1 2 3; do for _ in $(seq 100); do [ -S "$DIR/in-vm$i.sock" ] && break; sleep 0.05; done; done
out=$("$MIGR" send --group g1 --to "unix:$DIR/in-{vm}.sock" --json) || fail "send --group: $out"
echo "$out" | grep -q '"ok":true,"members":3' || fail "send --group: $out"
echo "send: $(echo "$out" | grep -o '"group_downtime_ms":[0-9.]*')"
dsts=("$DIR/dst1.ctl" "$DIR/dst2.ctl" "$DIR/dst3.ctl")
for c in "${dsts[@]}"; do "$MIGR" status --ctl "$c" --wait 10 >/dev/null || fail "$c does not answer"; done
verify_all "after send --group" "${dsts[@]}"

# 3. one new VMM refuses: nobody moves
cat >"$DIR/refusing-migr" <<EOS
#!/bin/bash
case "\$*" in *dst2.ctl*) exec "$NEWER" "\$@";; esac
exec "$(readlink -f "$MIGR")" "\$@"
EOS
chmod +x "$DIR/refusing-migr"
old=(); for c in "${dsts[@]}"; do old+=("$(pid_of "$c")"); done
if out=$("$MIGR" upgrade --group g1 --binary "$DIR/refusing-migr" --json 2>"$DIR/abort.err"); then
    fail "upgrade --group with a refusing member succeeded: $out"
fi
echo "$out" | grep -q '"ok":false' || fail "aborted group: no ok:false summary: $out"
echo "$out" | grep -q '"resumed_on_source":3' || fail "aborted group: not all 3 resumed on source: $out $(cat "$DIR/abort.err")"
grep -q "state version" "$DIR/abort.err" || fail "the refusal is not explained: $(cat "$DIR/abort.err")"
for i in 0 1 2; do
    [ "$(pid_of "${dsts[$i]}")" = "${old[$i]}" ] || fail "${dsts[$i]} moved although the group switchover aborted"
done
verify_all "after the aborted switchover" "${dsts[@]}"
for c in "${dsts[@]}"; do "$MIGR" stop --ctl "$c" >/dev/null; done
echo "ok: group of 3 ($BACKEND): joint upgrade, joint send, aborted switchover keeps every guest"
