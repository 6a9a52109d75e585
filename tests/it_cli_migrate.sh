#!/bin/bash
# End to end through the CLI: `migr run` (source VMM) and `migr recv`
# (destination VMM) as separate processes, `migr send --json` between them
# over a unix socket, over TCP on 127.0.0.1 (port picked by the receiver), and
# with a 2-vCPU guest. Checks the JSON summary, that the source VMM exits 0
# after handing the guest over, and that the guest verifies and keeps running
# on the destination. Exit 0 pass, 1 fail, 77 skip (no usable /dev/kvm).
set -u
. "$(dirname "$0")/itlib.sh"
need_kvm
it_setup cli-migrate


# migrate NAME TRANSPORT VCPUS
migrate() {
    local name=$1 kind=$2 vcpus=$3 t0=$SECONDS
    local sctl=$DIR/$name-src.ctl dctl=$DIR/$name-dst.ctl
    local slog=$DIR/$name-src.log dlog=$DIR/$name-dst.log
    local listen url

    "$MIGR" run --mem 128M --vcpus "$vcpus" --workload rate=64M,pattern=random,data=text \
        --ctl "$sctl" 2>"$slog" &
    local src=$!
    PIDS+=("$src")
    if ! wait_vmm "$src" "$sctl" 15; then
        # A VMM that cannot create a VM at all is a skip, not a failure.
        if ! kill -0 "$src" 2>/dev/null &&
            grep -q "not usable here\|KVM_CREATE_VM\|/dev/kvm" "$slog"; then
            echo "SKIP: migr run cannot create a VM: $(head -n1 "$slog")"
            exit 77
        fi
        fail "$name: the source VMM did not come up"
    fi

    if [ "$kind" = unix ]; then listen=unix:$DIR/$name-m.sock; else listen=tcp:127.0.0.1:0; fi
    "$MIGR" recv --listen "$listen" --ctl "$dctl" --timeout 60 --json >"$DIR/$name-recv.out" 2>"$dlog" &
    local dst=$!
    PIDS+=("$dst")
    url=
    for _ in $(seq 200); do
        url=$(sed -n 's/.*listening on \([^ ]*\)$/\1/p' "$dlog" | head -n1)
        [ -n "$url" ] && break
        kill -0 "$dst" 2>/dev/null || fail "$name: migr recv exited before listening"
        sleep 0.05
    done
    [ -n "$url" ] || fail "$name: migr recv did not print 'listening on' within 10 s"
    if [ "$kind" = tcp ]; then
        [[ "$url" =~ ^tcp:127\.0\.0\.1:([0-9]+)$ ]] || fail "$name: unexpected listen URL '$url'"
        local port=${BASH_REMATCH[1]}
        num_ok "$port > 0 && $port < 65536" || fail "$name: bad port $port"
    else
        [ "$url" = "$listen" ] || fail "$name: listening on '$url', asked for '$listen'"
    fi

    sleep 0.2   # let the guest dirty memory first
    M verify --ctl "$sctl" >"$DIR/$name-verify-src.out" 2>&1 ||
        fail "$name: the guest does not verify on the source before migration"

    M send --ctl "$sctl" --to "$url" --json >"$DIR/$name-send.out" 2>"$DIR/$name-send.err"
    local rc=$?
    [ $rc -eq 0 ] || fail "$name: migr send exited $rc"
    local js
    js=$(tail -n1 "$DIR/$name-send.out")
    local k
    for k in mode transport total_ms downtime_ms rounds pages_sent bytes_sent ram_bytes \
        throughput_mbps converged verified; do
        json_get "$js" "$k" >/dev/null || fail "$name: field '$k' missing from the JSON: $js"
    done
    local mode transport total down rounds pages bytes ram tput conv verified
    mode=$(json_get "$js" mode); transport=$(json_get "$js" transport)
    total=$(json_get "$js" total_ms); down=$(json_get "$js" downtime_ms)
    rounds=$(json_get "$js" rounds); pages=$(json_get "$js" pages_sent)
    bytes=$(json_get "$js" bytes_sent); ram=$(json_get "$js" ram_bytes)
    tput=$(json_get "$js" throughput_mbps); conv=$(json_get "$js" converged)
    verified=$(json_get "$js" verified)
    [ "$mode" = chybrid-tail ] || fail "$name: mode '$mode' (the default is tail)"
    [ "$transport" = "$kind" ] || fail "$name: transport '$transport', expected $kind"
    [ "$verified" = true ] || fail "$name: verified '$verified'"
    [ "$conv" = true ] || [ "$conv" = false ] || fail "$name: converged '$conv'"
    [ "$ram" = $((128 << 20)) ] || fail "$name: ram_bytes $ram"
    num_ok "$rounds >= 2" || fail "$name: rounds $rounds (expected >= 2)"
    num_ok "$pages >= $ram / 4096" || fail "$name: pages_sent $pages < RAM pages $((ram / 4096))"
    num_ok "$bytes > 0 && $total > 0 && $tput > 0" || fail "$name: bytes_sent $bytes total_ms $total throughput $tput"
    num_ok "$down >= 0 && $down <= $total" || fail "$name: downtime_ms $down, total_ms $total"
    num_ok "$total < 30000" || fail "$name: total_ms $total"
    # the blackout on one host clock: source pause -> destination resume,
    # inside the source's downtime (which also waits for DONE)
    local paused resumed djs sw
    paused=$(json_get "$js" paused_at_s) || fail "$name: no paused_at_s in the source's JSON: $js"
    for _ in $(seq 100); do [ -s "$DIR/$name-recv.out" ] && break; sleep 0.05; done
    djs=$(grep -m1 '"side":"destination"' "$DIR/$name-recv.out") || fail "$name: migr recv --json printed no summary"
    resumed=$(json_get "$djs" resumed_at_s) || fail "$name: no resumed_at_s in the destination's JSON: $djs"
    num_ok "$resumed > $paused && ($resumed - $paused) * 1000 <= $down + 0.05" ||
        fail "$name: paused_at_s $paused, resumed_at_s $resumed, downtime_ms $down"
    sw=$(printf '%s' "$js" | python3 -c 'import json,sys; s=json.load(sys.stdin)["switch_us"]; v=[s[k] for k in ("paused","last_pages","state_sent","ready","done")]; print(int(v==sorted(v) and v[-1] <= 1000*float(sys.argv[1]) + 1))' "$down") ||
        fail "$name: no switch_us in the source's JSON: $js"
    [ "$sw" = 1 ] || fail "$name: the switch's steps are out of order or past downtime_ms $down: $js"

    wait_exit "$src" 10
    rc=$?
    [ $rc -eq 0 ] || fail "$name: the source VMM exited $rc after the migration (124 = still running)"

    local st
    st=$(M status --ctl "$dctl" --wait 5) || fail "$name: no status from the destination"
    [ "$(json_get "$st" vcpus)" = "$vcpus" ] || fail "$name: destination reports vcpus $(json_get "$st" vcpus): $st"
    [ "$(json_get "$st" running)" = true ] || fail "$name: destination guest not running: $st"
    M verify --ctl "$dctl" >"$DIR/$name-verify-dst.out" 2>&1 ||
        fail "$name: the guest does not verify on the destination: $(cat "$DIR/$name-verify-dst.out")"
    local w1 w2
    w1=$(writes_of "$dctl")
    sleep 0.3
    w2=$(writes_of "$dctl")
    num_ok "$w2 > $w1" || fail "$name: the guest makes no progress on the destination ($w1 -> $w2 writes)"
    M stop --ctl "$dctl" >/dev/null || fail "$name: migr stop failed"
    wait_exit "$dst" 10
    rc=$?
    [ $rc -eq 0 ] || fail "$name: the destination VMM exited $rc after stop"
    echo "ok  $name: $rounds rounds, $pages pages, total $total ms, downtime $down ms ($((SECONDS - t0)) s)"
}

migrate unix-1vcpu unix 1
migrate tcp-1vcpu tcp 1
migrate unix-2vcpu unix 2
leftover=$(find "$DIR" -name '*.sock' -o -name '*.ctl' | head -n3)
[ -z "$leftover" ] || fail "sockets left behind by the VMMs: $leftover"
exit 0
