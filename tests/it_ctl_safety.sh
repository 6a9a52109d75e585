#!/bin/bash
# The control plane can neither lose a guest nor stretch its downtime:
#   1. `migr recv` whose --ctl cannot be bound (no such directory, in use by
#      another process, too long, abstract) refuses at start, before a source
#      can give it a guest; the source's migration then fails and its guest
#      keeps running there (it used to be destroyed after a "successful"
#      migration);
#   2. idle clients on the source's control socket during a migration do not
#      lengthen the downtime, and `status` answers at once meanwhile (each
#      idle client used to cost 5 s inside the pause);
#   3. the destination stops (SIGSTOP) in the middle of the stream: `migr
#      cancel` ends the migration at once and the guest runs on the source;
#      without a cancel, --stall-timeout does the same;
#   4. a waiting `migr recv` answers status before any guest arrives.
# Exit 0 pass, 1 fail, 77 skip (no usable /dev/kvm).
set -u
. "$(dirname "$0")/itlib.sh"
need_kvm
it_setup ctl-safety

SCTL=$DIR/s.ctl
"$MIGR" run --mem 256M --workload rate=64M --ctl "$SCTL" 2>"$DIR/src.log" &
SRC=$!
PIDS+=("$SRC")
if ! wait_vmm "$SRC" "$SCTL" 15; then
    if ! kill -0 "$SRC" 2>/dev/null && grep -q "not usable here\|KVM_CREATE_VM\|/dev/kvm" "$DIR/src.log"; then
        echo "SKIP: migr run cannot create a VM: $(head -n1 "$DIR/src.log")"
        exit 77
    fi
    fail "the source VMM did not come up"
fi

source_runs() {
    local st w1 w2
    kill -0 "$SRC" 2>/dev/null || fail "$1: the source VMM is gone"
    st=$(M status --ctl "$SCTL") || fail "$1: no status from the source"
    [ "$(json_get "$st" running)" = true ] || fail "$1: the source guest is not running: $st"
    w1=$(json_get "$st" writes)
    sleep 0.3
    w2=$(writes_of "$SCTL")
    num_ok "$w2 > $w1" || fail "$1: the source guest makes no progress ($w1 -> $w2)"
}

# start_recv NAME CTL [ARGS]: start migr recv on unix:DIR/NAME.sock; RECV=pid.
start_recv() {
    local name=$1 ctl=$2
    shift 2
    "$MIGR" recv --listen "unix:$DIR/$name.sock" --ctl "$ctl" "$@" 2>"$DIR/$name-recv.log" &
    RECV=$!
    PIDS+=("$RECV")
}

# 1. Control sockets that cannot be bound.
python3 -c 'import socket,sys,time
s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen(1); time.sleep(60)' "$DIR/taken.ctl" &
PIDS+=($!)
for _ in $(seq 100); do [ -S "$DIR/taken.ctl" ] && break; sleep 0.05; done
long=$DIR/$(printf 'x%.0s' $(seq 120)).ctl
i=0
for ctl in /nonexistent/d.ctl "$DIR/taken.ctl" "$long" @migr-test-abstract; do
    i=$((i + 1))
    start_recv bad$i "$ctl"
    wait_exit "$RECV" 10
    rc=$?
    [ $rc -eq 1 ] || fail "recv --ctl $ctl: exit $rc, expected 1 at start"
    grep -q "control socket\|$ctl" "$DIR/bad$i-recv.log" || fail "recv --ctl $ctl: no reason given"
    ! grep -q "listening on" "$DIR/bad$i-recv.log" || fail "recv --ctl $ctl: listened for a guest anyway"
    echo "    refused at start: $(tail -n1 "$DIR/bad$i-recv.log")"
    M send --ctl "$SCTL" --to "unix:$DIR/bad$i.sock" >"$DIR/bad$i-send.out" 2>"$DIR/bad$i-send.err" &&
        fail "send to a refused receiver succeeded"
    grep -q "keeps running on the source" "$DIR/bad$i-send.err" || fail "send: $(cat "$DIR/bad$i-send.err")"
    source_runs "bad ctl $i"
done
echo "ok  1. unbindable --ctl refused before any guest came; the guest stays on the source"

# 4. A waiting receiver answers status.
start_recv good "$DIR/d.ctl"
wait_vmm "$RECV" "$DIR/d.ctl" 10 || fail "the waiting receiver does not answer on its control socket"
st=$(M status --ctl "$DIR/d.ctl")
[ "$(json_get "$st" phase)" = waiting ] || fail "waiting receiver's status: $st"
echo "ok  4. waiting receiver: $st"

# 2. Three idle clients on the source's socket for the whole migration.
python3 -c 'import socket,sys,time
ss=[socket.socket(socket.AF_UNIX) for _ in range(3)]
[s.connect(sys.argv[1]) for s in ss]
time.sleep(30)' "$SCTL" &
IDLE=$!
PIDS+=("$IDLE")
sleep 0.3
M send --ctl "$SCTL" --to "unix:$DIR/good.sock" --max-rounds 1 --max-bandwidth 100M --json \
    >"$DIR/idle-send.out" 2>"$DIR/idle-send.err" &
SEND=$!
PIDS+=("$SEND")
sleep 0.8
t0=$(date +%s%N)
st=$(M status --ctl "$SCTL") || fail "no status during the migration"
ms=$((($(date +%s%N) - t0) / 1000000))
[ "$(json_get "$st" migrating)" = true ] || fail "status during the migration: $st"
num_ok "$ms < 1500" || fail "status took $ms ms during a migration with idle clients"
wait_exit "$SEND" 60 || fail "migration with idle control clients failed: $(cat "$DIR/idle-send.err")"
js=$(tail -n1 "$DIR/idle-send.out")
down=$(json_get "$js" downtime_ms)
num_ok "$down < 3000" || fail "downtime $down ms with 3 idle control clients (the pause waited for them)"
M verify --ctl "$DIR/d.ctl" >/dev/null || fail "the migrated guest does not verify"
echo "ok  2. 3 idle control clients: status in $ms ms, downtime $down ms"
kill "$IDLE" 2>/dev/null; reap "$IDLE" 2>/dev/null
wait_exit "$SRC" 10 || fail "the source VMM did not exit after the migration"

# The guest now runs in the first receiver (d.ctl): it is the source from here.
SRC=$RECV
SCTL=$DIR/d.ctl

# 3. A destination that stops answering mid-stream.
stalled_send() { # NAME [SEND ARGS]: start a send to a receiver that is SIGSTOPped mid-stream
    local name=$1
    shift
    start_recv "$name" "$DIR/$name.ctl"
    wait_vmm "$RECV" "$DIR/$name.ctl" 10 || fail "$name: receiver not up"
    M send --ctl "$SCTL" --to "unix:$DIR/$name.sock" --max-bandwidth 20M --json "$@" \
        >"$DIR/$name-send.out" 2>"$DIR/$name-send.err" &
    SEND=$!
    PIDS+=("$SEND")
    sleep 1.5
    kill -0 "$SEND" 2>/dev/null || fail "$name: the migration ended before the stall"
    kill -STOP "$RECV"
}
stalled_send cancel
sleep 1
t0=$(date +%s%N)
M cancel --ctl "$SCTL" >/dev/null || fail "cancel during a stall was refused"
wait_exit "$SEND" 10
rc=$?
ms=$((($(date +%s%N) - t0) / 1000000))
[ $rc -eq 1 ] || fail "cancel: send exited $rc, expected 1"
num_ok "$ms < 3000" || fail "cancel took $ms ms to end a stalled migration"
js=$(tail -n1 "$DIR/cancel-send.out")
[ "$(json_get "$js" resumed_on_source)" = true ] || fail "cancel: not resumed on the source: $js"
grep -q "cancelled" "$DIR/cancel-send.err" || fail "cancel: $(cat "$DIR/cancel-send.err")"
source_runs "cancel during a stall"
kill -CONT "$RECV"
wait_exit "$RECV" 10
echo "ok  3a. cancel during a stall: send ended in $ms ms, guest running on the source"

stalled_send stall --stall-timeout 1500
t0=$(date +%s%N)
wait_exit "$SEND" 20
rc=$?
ms=$((($(date +%s%N) - t0) / 1000000))
[ $rc -eq 1 ] || fail "stall: send exited $rc, expected 1"
grep -q "no progress on the link" "$DIR/stall-send.err" || fail "stall: $(cat "$DIR/stall-send.err")"
source_runs "stall timeout"
kill -CONT "$RECV"
wait_exit "$RECV" 10
M verify --ctl "$SCTL" >/dev/null || fail "the guest does not verify after the stalls"
echo "ok  3b. --stall-timeout 1500: send gave up $ms ms after the stall, guest running on the source"
