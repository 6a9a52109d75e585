#!/bin/bash
# The PVH guest migrated between two migr VMMs (pre-copy over a unix socket,
# then post-copy back over TCP on 127.0.0.1): each destination verifies and
# the guest keeps writing there. Exit 0 pass, 1 fail, 77 skip.
set -u
. "$(dirname "$0")/itlib.sh"
need_kvm
it_setup pvh-migrate
ELF=${BUILD:-build}/bench/peers/pvh.elf
[ -f "$ELF" ] || fail "$ELF is missing (make all builds it)"

# recv NAME LISTEN: start a receiver, set URL to where it listens
recv() {
    "$MIGR" recv --listen "$2" --ctl "$DIR/$1.ctl" --timeout 60 2>"$DIR/$1.log" &
    PIDS+=($!)
    URL=
    for _ in $(seq 200); do
        URL=$(sed -n 's/.*listening on \([^ ]*\)$/\1/p' "$DIR/$1.log" | head -n1)
        [ -n "$URL" ] && return 0
        sleep 0.05
    done
    fail "$1: migr recv did not listen"
}

# hop FROM TO MODE: migrate, then verify and check progress on TO
hop() {
    local js w0 w1
    js=$(M send --ctl "$DIR/$1.ctl" --to "$URL" --mode "$3" --json | tail -n1) || fail "send $1 -> $2 ($3): $js"
    [ "$(json_get "$js" ok)" = true ] || fail "send $1 -> $2 ($3): $js"
    [ "$(json_get "$js" verified)" = true ] || fail "send $1 -> $2 ($3) not verified: $js"
    local out
    out=$(M verify --ctl "$DIR/$2.ctl") || fail "verify on $2: $out"
    w0=$(writes_of "$DIR/$2.ctl")
    sleep 0.5
    w1=$(writes_of "$DIR/$2.ctl")
    num_ok "$w1 > $w0" || fail "the guest does not run on $2 ($w0 -> $w1 writes)"
    echo "$1 -> $2 ($3): $(json_get "$js" total_ms) ms, downtime $(json_get "$js" downtime_ms) ms; $out"
}

"$MIGR" run --mem 128M --kernel "$ELF" --workload rate=32M,ws=32M,data=text --ctl "$DIR/a.ctl" 2>"$DIR/a.log" &
PIDS+=($!)
wait_vmm "${PIDS[0]}" "$DIR/a.ctl" 10 || fail "migr run --kernel did not come up"
for _ in $(seq 100); do
    [ "$(writes_of "$DIR/a.ctl")" -gt 0 ] && break
    sleep 0.1
done
[ "$(writes_of "$DIR/a.ctl")" -gt 0 ] || fail "the PVH guest wrote nothing in 10 s"
recv b "unix:$DIR/b.sock"
hop a b precopy
recv c "tcp:127.0.0.1:0"
hop b c postcopy
M stop --ctl "$DIR/c.ctl" >/dev/null
exit 0
