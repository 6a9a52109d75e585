#!/bin/bash
# Post-copy over TCP when the destination cannot connect back to the source
# (docs/transport.md, "Side connections"): the source VMM runs in a network
# namespace of its own that nothing outside can reach; it reaches the
# destination (`migr recv --listen tcp:127.0.0.1:0` outside) only through a
# port forward into the namespace (tests/netns_forward.py), like a source
# behind NAT or a proxy. The fault channel must be opened the way the stream
# was (the source connects again, through the forward): post-copy then uses
# it ("fault_channel":true) and the guest verifies on the destination; with
# a key (--key-file), the fault channel is authenticated and encrypted too.
# (A destination that connects back to the source, as revision 1.3 did,
# fails here — its log: "fault channel: connect tcp:127.0.0.1:P: Connection
# refused", the source's: "the destination did not open the fault channel";
# run this test with MIGR=<an older build> to see it.)
# Exit 0 pass, 1 fail, 77 skip (no /dev/kvm, no python3, no CAP_NET_ADMIN).
set -u
. "$(dirname "$0")/itlib.sh"
need_kvm
command -v python3 >/dev/null || { echo "SKIP: python3 not found (the port forward)"; exit 77; }
command -v ip >/dev/null || { echo "SKIP: ip (iproute2) not found"; exit 77; }
it_setup postcopy-nat
NS=migr-nat-$$
ip netns add "$NS" 2>"$DIR/netns.err" || { echo "SKIP: ip netns add: $(head -n1 "$DIR/netns.err") (needs CAP_NET_ADMIN)"; exit 77; }
trap 'it_cleanup; ip netns del "$NS" 2>/dev/null' EXIT
ip netns exec "$NS" ip link set lo up || fail "lo up in $NS"
MIGR_ABS=$(cd "$(dirname "$MIGR")" && pwd)/$(basename "$MIGR")
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$DIR/key" && chmod 600 "$DIR/key"

# run NAME [KEY ARGS]: one post-copy migration from inside the namespace.
run() {
    local name=$1
    shift
    local sctl=$DIR/$name-src.ctl dctl=$DIR/$name-dst.ctl
    ip netns exec "$NS" "$MIGR_ABS" run --mem 128M --workload rate=64M,pattern=random --ctl "$sctl" \
        2>"$DIR/$name-src.log" &
    local src=$!
    PIDS+=("$src")
    if ! wait_vmm "$src" "$sctl" 15; then
        if ! kill -0 "$src" 2>/dev/null && grep -q "not usable here\|KVM_CREATE_VM\|/dev/kvm" "$DIR/$name-src.log"; then
            echo "SKIP: migr run cannot create a VM: $(head -n1 "$DIR/$name-src.log")"
            exit 77
        fi
        fail "$name: the source VMM did not come up"
    fi
    "$MIGR" recv --listen tcp:127.0.0.1:0 --ctl "$dctl" --timeout 60 "$@" 2>"$DIR/$name-recv.log" &
    local dst=$!
    PIDS+=("$dst")
    local url=
    for _ in $(seq 200); do
        url=$(sed -n 's/.*listening on \([^ ]*\)$/\1/p' "$DIR/$name-recv.log" | head -n1)
        [ -n "$url" ] && break
        sleep 0.05
    done
    [ -n "$url" ] || fail "$name: migr recv did not listen"
    python3 "$(dirname "$0")/netns_forward.py" "$NS" "${url##*:}" >"$DIR/$name-fwd.out" 2>"$DIR/$name-fwd.log" &
    PIDS+=($!)
    for _ in $(seq 100); do grep -q listening "$DIR/$name-fwd.out" 2>/dev/null && break; sleep 0.05; done
    grep -q listening "$DIR/$name-fwd.out" || fail "$name: the port forward did not start"
    local fport
    fport=$(head -n1 "$DIR/$name-fwd.out")
    # The namespace cannot reach the destination's port directly, nor the
    # other way round: only the forward connects them.
    ip netns exec "$NS" python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', int(sys.argv[1])), 1)" \
        "${url##*:}" 2>/dev/null && fail "$name: the namespace reaches the destination without the forward"
    M send --ctl "$sctl" --to "tcp:127.0.0.1:$fport" --mode postcopy --max-bandwidth 40M --json "$@" \
        >"$DIR/$name-send.out" 2>"$DIR/$name-send.err"
    local rc=$?
    local js
    js=$(tail -n1 "$DIR/$name-send.out")
    [ $rc -eq 0 ] || fail "$name: migr send exited $rc: $(cat "$DIR/$name-send.err")"
    [ "$(json_get "$js" ok)" = true ] || fail "$name: $js"
    [ "$(json_get "$js" fault_channel)" = true ] || fail "$name: post-copy did not use a fault channel: $js"
    num_ok "$(json_get "$js" demand_pages) > 0" || fail "$name: no page was asked for: $js"
    wait_exit "$src" 20 >/dev/null
    M verify --ctl "$dctl" >"$DIR/$name-verify.out" || fail "$name: the guest does not verify: $(cat "$DIR/$name-verify.out")"
    M stop --ctl "$dctl" >/dev/null
    wait_exit "$dst" 10 >/dev/null
    echo "ok  $name: post-copy through the forward, fault channel on, $(json_get "$js" demand_pages) pages asked for," \
        "verified ($(json_get "$js" total_ms) ms)"
}

run plain
run keyed --key-file "$DIR/key"
