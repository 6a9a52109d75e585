#!/bin/bash
# Watching and steering a running migration (issue 17):
# - a waiting `migr recv` answers status ("waiting") and can be stopped;
# - `migr status --json` mid-migration shows pages_sent rising, a dirty rate
#   within 20% of the guest's configured rate (a sequential writer over more
#   RAM than a round covers, so no page is counted twice), an expected
#   downtime once round 1 is over, and the receiver's bytes rising;
# - SIGINT to `migr send` cancels the migration: exit 1, "cancelled", the
#   guest verifies and runs on the source, and the receiver gets none.
# Exit 0 pass, 1 fail, 77 skip (no usable /dev/kvm).
set -u
. "$(dirname "$0")/itlib.sh"
need_kvm
it_setup cli-status

# A waiting receiver: status from the start, stop ends it.
"$MIGR" recv --listen unix:$DIR/w.sock --ctl $DIR/w.ctl 2>$DIR/w.log &
W=$!
PIDS+=("$W")
st=$(M status --ctl $DIR/w.ctl --wait 10 --json) || fail "a waiting receiver does not answer status"
[ "$(json_get "$st" phase)" = waiting ] || fail "waiting receiver: phase is not 'waiting': $st"
[ "$(json_get "$st" schema)" = 1 ] || fail "status has no schema 1: $st"
M stop --ctl $DIR/w.ctl >$DIR/w-stop.out || fail "migr stop on a waiting receiver failed"
grep -q "no guest had arrived" $DIR/w-stop.out || fail "stop of a waiting receiver says: $(cat $DIR/w-stop.out)"
wait_exit $W 10 || fail "the waiting receiver did not exit 0 after migr stop"
[ ! -e $DIR/w.ctl ] && [ ! -e $DIR/w.sock ] || fail "sockets left behind: $(ls $DIR)"

# 256 MiB guest writing 16 MiB/s in order; 32 MiB/s link: round 1 takes ~8 s
# and dirties ~128 MiB, half the RAM (no page written twice within it).
RATE=16
"$MIGR" run --mem 256M --workload rate=${RATE}M,pattern=sequential,data=text --ctl $DIR/s.ctl --daemon \
    >$DIR/s.pid 2>$DIR/s.log || fail "migr run --daemon failed"
SRC=$(cat $DIR/s.pid)
M status --ctl $DIR/s.ctl --json | grep -q '"running":true' || fail "migr run --daemon returned before the VM answered"
# --mode precopy: the rounds go on at this rate (the default tail would switch to post-copy
# after round 1, where no dirty rate is tracked on the source)
"$MIGR" recv --listen unix:$DIR/m.sock --ctl $DIR/d.ctl --daemon >$DIR/d.pid 2>$DIR/d.log || fail "recv --daemon"
DST=$(cat $DIR/d.pid)
"$MIGR" send --ctl $DIR/s.ctl --to unix:$DIR/m.sock --mode precopy --compress none --max-bandwidth 32M --json \
    >$DIR/send.out 2>$DIR/send.err &
SEND=$!
PIDS+=("$SEND")
prev=0 rises=0 dirty= down= rbytes=0
for _ in $(seq 100); do
    sleep 0.4
    st=$(M status --ctl $DIR/s.ctl --json 2>/dev/null) || break
    grep -q '"progress"' <<<"$st" || continue
    p=$(json_get "$st" pages_sent)
    num_ok "$p > $prev" && rises=$((rises + 1))
    prev=$p
    r=$(json_get "$st" round)
    if [ "$r" -ge 2 ] && [ -z "$dirty" ]; then
        dirty=$(json_get "$st" dirty_rate)
        down=$(json_get "$st" expected_downtime_ms)
        tr=$(json_get "$st" transfer_rate)
        dst=$(M status --ctl $DIR/d.ctl --json)
        rbytes=$(json_get "$dst" bytes_received)
        [ "$(json_get "$dst" side)" = destination ] || fail "receiver status has no destination progress: $dst"
        echo "round 2: dirty_rate $dirty B/s, transfer_rate $tr B/s, expected_downtime_ms $down, receiver $rbytes B"
        break
    fi
done
[ -n "$dirty" ] || fail "no status showed round 2 (last: $st)"
[ $rises -ge 3 ] || fail "pages_sent rose only $rises times"
want=$((RATE * 1048576))
num_ok "$dirty > 0.8 * $want && $dirty < 1.2 * $want" || fail "dirty rate $dirty B/s is not within 20% of $want"
num_ok "$down >= 0" || fail "expected downtime not known after round 1: $down"
num_ok "$tr > 0.5 * 32 * 1048576 && $tr < 1.3 * 32 * 1048576" || fail "transfer rate $tr B/s, the link is 32 MiB/s"
num_ok "$rbytes > 64 * 1048576" || fail "the receiver saw only $rbytes bytes"
wait_exit $SEND 60 || fail "migr send failed: $(cat $DIR/send.err)"
grep -q '"schema":1,"side":"source"' $DIR/send.out || fail "send JSON lacks schema/side: $(head -c 200 $DIR/send.out)"
M verify --ctl $DIR/d.ctl --wait 10 >/dev/null || fail "the guest does not verify on the destination"
M stop --ctl $DIR/d.ctl >/dev/null

# Ctrl-C on migr send: cancelled, the guest stays on the source.
"$MIGR" run --mem 256M --workload rate=${RATE}M --ctl $DIR/c.ctl --daemon >/dev/null 2>$DIR/c.log || fail "run c"
"$MIGR" recv --listen unix:$DIR/c.sock --ctl $DIR/cd.ctl --daemon >$DIR/cd.pid 2>$DIR/cd.log || fail "recv cd"
"$MIGR" send --ctl $DIR/c.ctl --to unix:$DIR/c.sock --compress none --max-bandwidth 32M >$DIR/c-send.out \
    2>$DIR/c-send.err &
SEND=$!
PIDS+=("$SEND")
for _ in $(seq 100); do M status --ctl $DIR/c.ctl --json | grep -q '"pages_sent"' && break; sleep 0.1; done
kill -INT $SEND
wait_exit $SEND 30
rc=$?
[ $rc -eq 1 ] || fail "migr send after SIGINT: exit $rc, expected 1"
grep -q "cancelled: the guest runs on the source" $DIR/c-send.err || fail "SIGINT: stderr says: $(cat $DIR/c-send.err)"
grep -q "not migrated: the guest runs on the source" $DIR/c-send.out || fail "SIGINT: summary says: $(cat $DIR/c-send.out)"
if grep -q "pages intact" $DIR/c-send.out; then fail "a cancelled run prints a CRC line"; fi
M verify --ctl $DIR/c.ctl >/dev/null || fail "the guest does not verify on the source after SIGINT"
M status --ctl $DIR/c.ctl --json | grep -q '"running":true' || fail "the guest does not run on the source after SIGINT"
M stop --ctl $DIR/c.ctl >/dev/null
exit 0
