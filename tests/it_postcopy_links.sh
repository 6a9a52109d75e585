#!/bin/bash
# Post-copy never freezes a guest when the source or a link goes away:
#   1. the source VMM is killed (SIGKILL) during post-copy, over unix
#      (post-copy) and TCP (hybrid): the destination, with vCPUs blocked in
#      faults nobody will serve, exits 1 within seconds saying the guest is
#      lost here (it used to hang in D state: the teardown changed a KVM
#      memslot while a vCPU waited in userfaultfd);
#   2. the fault channel alone stops forwarding (tests/fault_proxy.py keeps
#      the connection open and drops the source's answers): the destination
#      gives up after --postcopy-timeout, the source sees the link close and
#      takes the guest back from its checkpoint; the guest runs, verified, on
#      the source (it used to stay frozen on both sides);
#   3. a partition (every connection stops, nothing closes): the
#      destination's lease runs out and it stops the guest; the source takes
#      it back only after twice the lease.
# Exit 0 pass, 1 fail, 77 skip (no usable /dev/kvm, no python3).
set -u
. "$(dirname "$0")/itlib.sh"
need_kvm
command -v python3 >/dev/null || { echo "SKIP: python3 not found (the test proxy)"; exit 77; }
it_setup postcopy-links

# start_src NAME: a source VMM at DIR/NAME-src.ctl; SRC=pid, SCTL=path.
start_src() {
    SCTL=$DIR/$1-src.ctl
    "$MIGR" run --mem 256M --workload rate=128M,pattern=sequential --ctl "$SCTL" 2>"$DIR/$1-src.log" &
    SRC=$!
    PIDS+=("$SRC")
    if ! wait_vmm "$SRC" "$SCTL" 15; then
        if ! kill -0 "$SRC" 2>/dev/null && grep -q "not usable here\|KVM_CREATE_VM\|/dev/kvm" "$DIR/$1-src.log"; then
            echo "SKIP: migr run cannot create a VM: $(head -n1 "$DIR/$1-src.log")"
            exit 77
        fi
        fail "$1: the source VMM did not come up"
    fi
}

# start_recv NAME LISTEN [ARGS]: RECV=pid, URL=where it listens.
start_recv() {
    local name=$1 listen=$2
    shift 2
    "$MIGR" recv --listen "$listen" --ctl "$DIR/$name-dst.ctl" "$@" 2>"$DIR/$name-recv.log" &
    RECV=$!
    PIDS+=("$RECV")
    URL=
    for _ in $(seq 200); do
        URL=$(sed -n 's/.*listening on \([^ ]*\)$/\1/p' "$DIR/$name-recv.log" | head -n1)
        [ -n "$URL" ] && return 0
        kill -0 "$RECV" 2>/dev/null || fail "$name: migr recv exited before listening"
        sleep 0.05
    done
    fail "$name: migr recv did not listen"
}

# 1. The source dies in post-copy.
for how in "unix postcopy" "tcp hybrid"; do
    set -- $how
    name=kill-$1
    start_src "$name"
    sleep 1
    if [ "$1" = unix ]; then start_recv "$name" "unix:$DIR/$name.sock"; else start_recv "$name" "tcp:127.0.0.1:0"; fi
    M send --ctl "$SCTL" --to "$URL" --mode "$2" --max-bandwidth 40M >"$DIR/$name-send.out" 2>"$DIR/$name-send.err" &
    SEND=$!
    PIDS+=("$SEND")
    for _ in $(seq 300); do # the source's status shows the phase
        M status --ctl "$SCTL" 2>/dev/null | grep -q '"phase":"postcopy"' && break
        sleep 0.05
    done
    sleep 0.3
    kill -0 "$SEND" 2>/dev/null || fail "$name: post-copy ended before the source was killed"
    kill -KILL "$SRC"
    reap "$SRC"
    wait_exit "$RECV" 15
    rc=$?
    [ $rc -eq 1 ] || fail "$name: the destination exited $rc (124: still there, $(ps -o stat= -p "$RECV")), expected 1"
    grep -q "post-copy broke" "$DIR/$name-recv.log" || fail "$name: no reason: $(tail -n2 "$DIR/$name-recv.log")"
    wait_exit "$SEND" 10
    echo "ok  1. $1 $2: source killed; destination: $(grep -o 'post-copy broke[^:]*' "$DIR/$name-recv.log")"
done

# 2. The fault channel silently stops carrying answers.
start_src fch
sleep 1
start_recv fch "tcp:127.0.0.1:0" --postcopy-timeout 2000
tport=${URL##*:}
pport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.2",0)); print(s.getsockname()[1])')
python3 "$(dirname "$0")/fault_proxy.py" "$pport" "$tport" 127.0.0.3 --stall-fch-after 200000 \
    >"$DIR/proxy.out" 2>"$DIR/proxy.log" &
PIDS+=($!)
for _ in $(seq 100); do grep -q listening "$DIR/proxy.out" && break; sleep 0.05; done
grep -q listening "$DIR/proxy.out" || fail "the test proxy did not start"
t0=$(date +%s%N)
M send --ctl "$SCTL" --to "tcp:127.0.0.2:$pport" --mode postcopy --max-bandwidth 40M --json \
    >"$DIR/fch-send.out" 2>"$DIR/fch-send.err" &
SEND=$!
PIDS+=("$SEND")
wait_exit "$RECV" 30
rc=$?
ms=$((($(date +%s%N) - t0) / 1000000))
[ $rc -eq 1 ] || fail "fch: the destination exited $rc (124: still frozen), expected 1"
grep -Eq "did not answer a fault|fault channel stopped|nothing from the source" "$DIR/fch-recv.log" || fail "fch: $(tail -n2 "$DIR/fch-recv.log")"
wait_exit "$SEND" 20
rc=$?
[ $rc -eq 1 ] || fail "fch: migr send exited $rc, expected 1"
js=$(tail -n1 "$DIR/fch-send.out")
[ "$(json_get "$js" resumed_on_source)" = true ] || fail "fch: the source did not take the guest back: $js"
grep -q "taken back" "$DIR/fch-send.err" || fail "fch: $(cat "$DIR/fch-send.err")"
st=$(M status --ctl "$SCTL") || fail "fch: no source VMM"
[ "$(json_get "$st" running)" = true ] || fail "fch: the source guest is not running: $st"
M verify --ctl "$SCTL" >"$DIR/fch-verify.out" || fail "fch: the guest taken back does not verify: $(cat "$DIR/fch-verify.out")"
echo "ok  2. fault channel lost: the destination gave up, the guest runs verified on the source ($ms ms)"

# 3. A partition: after a second every connection stops carrying anything,
# nothing closes. The destination's lease runs out (no checkpoint
# acknowledged for 1.5 s): it stops the guest; the source hears nothing for
# twice its lease (2 x 1.5 s) and only then takes the guest back — so the
# guest never runs on both sides.
start_src part
sleep 1
start_recv part "tcp:127.0.0.1:0" --postcopy-timeout 1500
tport=${URL##*:}
pport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.2",0)); print(s.getsockname()[1])')
python3 "$(dirname "$0")/fault_proxy.py" "$pport" "$tport" 127.0.0.3 --partition-after 1.0 \
    >"$DIR/proxy2.out" 2>"$DIR/proxy2.log" &
PIDS+=($!)
for _ in $(seq 100); do grep -q listening "$DIR/proxy2.out" && break; sleep 0.05; done
grep -q listening "$DIR/proxy2.out" || fail "the test proxy did not start"
M send --ctl "$SCTL" --to "tcp:127.0.0.2:$pport" --mode postcopy --max-bandwidth 40M --postcopy-lease 1500 \
    --json >"$DIR/part-send.out" 2>"$DIR/part-send.err" &
SEND=$!
PIDS+=("$SEND")
wait_exit "$RECV" 30
rc=$?
t_dst=$(date +%s%N)
[ $rc -eq 1 ] || fail "partition: the destination exited $rc (124: still running), expected 1"
grep -q "no checkpoint acknowledged" "$DIR/part-recv.log" || fail "partition: $(tail -n2 "$DIR/part-recv.log")"
wait_exit "$SEND" 30
rc=$?
t_src=$(date +%s%N)
[ $rc -eq 1 ] || fail "partition: migr send exited $rc, expected 1"
js=$(tail -n1 "$DIR/part-send.out")
[ "$(json_get "$js" resumed_on_source)" = true ] || fail "partition: the source did not take the guest back: $js"
grep -q "lease of 1500 ms ran out" "$DIR/part-send.err" || fail "partition: $(cat "$DIR/part-send.err")"
num_ok "$t_src > $t_dst" || fail "partition: the source resumed the guest before the destination stopped it"
M verify --ctl "$SCTL" >"$DIR/part-verify.out" || fail "partition: $(cat "$DIR/part-verify.out")"
echo "ok  3. partition: the destination stopped (lease), the source took the guest back $(((t_src - t_dst) / 1000000)) ms later, verified"
