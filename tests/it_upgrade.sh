#!/bin/bash
# Zero-copy hand-over and live upgrade through the CLI: a running, dirtying
# guest is handed to a fresh VMM process twice (migr upgrade) and once more
# with migr send --handover; it verifies after each step and keeps running.
# A new VMM with an incompatible state format is refused and the guest keeps
# running in the old one; a hand-over to a peer that dies leaves it running too.
# Runs for the proc backend, then for kvm when /dev/kvm is usable.
set -u
# Backend: the proc backend always, then kvm when /dev/kvm is usable.
BACKEND=${MIGR_TEST_BACKEND:-}
if [ -z "$BACKEND" ]; then
    MIGR_TEST_BACKEND=proc "$0" || exit 1
    [ -r /dev/kvm ] && [ -w /dev/kvm ] || { echo "(kvm part skipped: /dev/kvm not usable)"; exit 0; }
    BACKEND=kvm
fi
echo "=== backend $BACKEND"
. "$(dirname "$0")/itlib.sh"
# migr built so that its guests announce another state format (tests/newer_state.c)
NEWER=${NEWER:-$(dirname "$MIGR")/tests/migr-newer-state}
[ -x "$NEWER" ] || { echo "FAIL: $NEWER is not built (make $NEWER)"; exit 1; }
it_setup upgrade
writes() { writes_of "$1"; }
alive() { [ -r "/proc/$1/status" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status"; }

"$MIGR" run --backend "$BACKEND" --mem 128M --vcpus 2 --workload rate=64M,pattern=random,data=text --ctl "$DIR/vm.ctl" 2>"$DIR/run.log" &
PIDS+=($!)
"$MIGR" status --ctl "$DIR/vm.ctl" --wait 20 >/dev/null || fail "VMM did not start"
p0=$(pid_of "$DIR/vm.ctl")

for i in 1 2; do
    out=$("$MIGR" upgrade --ctl "$DIR/vm.ctl" --json) || fail "upgrade $i: $out"
    echo "$out" | grep -q '"mode":"handover"' || fail "upgrade $i: not a hand-over: $out"
    echo "$out" | grep -q '"pages_sent":0,' || fail "upgrade $i copied pages: $out"
    p=$(pid_of "$DIR/vm.ctl")
    [ -n "$p" ] && [ "$p" != "$p0" ] || fail "upgrade $i: VMM pid still $p0"
    for _ in $(seq 60); do alive "$p0" || break; sleep 0.05; done
    alive "$p0" && fail "old VMM $p0 still alive"
    p0=$p
    "$MIGR" verify --ctl "$DIR/vm.ctl" || fail "verify after upgrade $i"
    w1=$(writes "$DIR/vm.ctl"); sleep 0.3; w2=$(writes "$DIR/vm.ctl")
    [ "$w2" -gt "$w1" ] || fail "guest not running after upgrade $i ($w1 -> $w2)"
done

# The seed-000 round trip, by hand-over and by copy: same control socket, guest verified.
for how in --handover --copy; do
    out=$("$MIGR" rejuvenate --ctl "$DIR/vm.ctl" $how --json) || fail "rejuvenate $how: $out"
    echo "$out" | grep -q '"ok":true' || fail "rejuvenate $how: $out"
    echo "rejuvenate $how: $out"
    p=$(pid_of "$DIR/vm.ctl"); [ "$p" != "$p0" ] || fail "rejuvenate $how: VMM 1 was not rebooted"
    p0=$p
    "$MIGR" verify --ctl "$DIR/vm.ctl" || fail "verify after rejuvenate $how"
done

# Warm VMM reboot: the same process execs a fresh VMM, memory stays in place.
out=$("$MIGR" rejuvenate --ctl "$DIR/vm.ctl" --warm --json) || fail "rejuvenate --warm: $out"
echo "rejuvenate --warm: $out"
"$MIGR" status --ctl "$DIR/vm.ctl" | grep -q '"warm":true' || fail "the VMM after a warm reboot is not the exec'd one"
"$MIGR" verify --ctl "$DIR/vm.ctl" || fail "verify after the warm reboot"
w1=$(writes "$DIR/vm.ctl"); sleep 0.3; w2=$(writes "$DIR/vm.ctl")
[ "$w2" -gt "$w1" ] || fail "guest not running after the warm reboot"
p0=$(pid_of "$DIR/vm.ctl")

# An incompatible new binary (another state format) is refused; the guest stays.
if "$MIGR" upgrade --ctl "$DIR/vm.ctl" --binary "$NEWER" 2>"$DIR/refused.err"; then
    fail "an upgrade to an incompatible state format succeeded"
fi
grep -q "state version" "$DIR/refused.err" || fail "refusal does not name the state version: $(cat "$DIR/refused.err")"
[ "$(pid_of "$DIR/vm.ctl")" = "$p0" ] || fail "the guest left its VMM after a refused upgrade"
"$MIGR" verify --ctl "$DIR/vm.ctl" || fail "verify after the refused upgrade"

# A hand-over peer that dies before resuming: the guest keeps running here.
"$MIGR" recv --listen "unix:$DIR/ho.sock" --ctl "$DIR/dst.ctl" 2>"$DIR/dead.log" &
dead=$!; PIDS+=($dead)
for _ in $(seq 100); do [ -S "$DIR/ho.sock" ] && break; sleep 0.05; done
kill -STOP "$dead"
( sleep 0.5; kill -9 "$dead" ) &
PIDS+=($!)
if "$MIGR" send --ctl "$DIR/vm.ctl" --to "handover:$DIR/ho.sock" >"$DIR/dead.out" 2>&1; then
    fail "hand-over to a dead peer succeeded"
fi
grep -q "keeps running on the source" "$DIR/dead.out" || fail "no 'keeps running' message: $(cat "$DIR/dead.out")"
"$MIGR" verify --ctl "$DIR/vm.ctl" || fail "verify after the failed hand-over"
w1=$(writes "$DIR/vm.ctl"); sleep 0.3; w2=$(writes "$DIR/vm.ctl")
[ "$w2" -gt "$w1" ] || fail "guest not running after the failed hand-over"

# migr send --handover to a migr recv, then stop.
"$MIGR" recv --listen "unix:$DIR/ho2.sock" --ctl "$DIR/dst2.ctl" 2>"$DIR/recv2.log" &
PIDS+=($!)
for _ in $(seq 100); do [ -S "$DIR/ho2.sock" ] && break; sleep 0.05; done
"$MIGR" send --ctl "$DIR/vm.ctl" --to "unix:$DIR/ho2.sock" --handover --json >"$DIR/ho2.json" || fail "send --handover"
"$MIGR" verify --ctl "$DIR/dst2.ctl" --wait 10 || fail "verify after send --handover"
"$MIGR" stop --ctl "$DIR/dst2.ctl" >/dev/null || fail "stop"
exit 0
