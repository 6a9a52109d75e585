#!/bin/bash
# migr status --watch when stdout is not a terminal (a pipe, a file, a script):
# no terminal control codes; without --json one line per update (time first,
# phase, round, pages, rates); with --json one JSON object per line; a
# waiting receiver and a receiving one get their own lines; the watch ends
# (exit 0) once the source VMM is gone after the migration.
# Exit 0 pass, 1 fail, 77 skip (no usable /dev/kvm).
set -u
. "$(dirname "$0")/itlib.sh"
need_kvm
it_setup status-pipe

"$MIGR" recv --listen unix:$DIR/m.sock --ctl $DIR/d.ctl 2>$DIR/d.err &
DST=$!
PIDS+=("$DST")
wait_vmm $DST $DIR/d.ctl 10 || fail "the receiver did not come up" # status answers before a guest arrives
"$MIGR" status --ctl $DIR/d.ctl --watch 0.1 >$DIR/wait.out 2>&1 &
W=$!
PIDS+=("$W")
sleep 0.5
kill -TERM $W; wait_exit $W 5 || fail "status --watch did not end on SIGTERM with 0"
grep -qE '^[0-9]{2}:[0-9]{2}:[0-9]{2} no guest yet \(waiting\)$' $DIR/wait.out || fail "waiting: $(head -n3 $DIR/wait.out)"

start_source $DIR/s.ctl --mem 128M --workload rate=16M
# 128 MiB at 32 MiB/s: ~4 s of pre-copy to watch
"$MIGR" status --ctl $DIR/s.ctl --watch 0.2 >$DIR/watch.out 2>$DIR/watch.err &
WS=$!
"$MIGR" status --ctl $DIR/s.ctl --watch 0.2 --json >$DIR/watch-json.out 2>$DIR/watch-json.err &
WJ=$!
"$MIGR" status --ctl $DIR/d.ctl --watch 0.2 2>&1 | cat >$DIR/watch-dst.out &
WD=$!
PIDS+=("$WS" "$WJ" "$WD")
M send --ctl $DIR/s.ctl --to unix:$DIR/m.sock --mode precopy --max-bandwidth 32M >$DIR/send.out 2>$DIR/send.err ||
    fail "the migration failed: $(cat $DIR/send.err)"
wait_exit $WS 10 || fail "status --watch (source) did not exit 0 once the source VMM was gone"
wait_exit $WJ 10 || fail "status --watch --json did not exit 0 once the source VMM was gone"
grep -q "is gone" $DIR/watch.err || fail "the watch does not say why it ended: $(cat $DIR/watch.err)"

for f in watch.out watch-json.out watch-dst.out wait.out; do
    if LC_ALL=C grep -q $'[\x1b\r\x07]' $DIR/$f; then fail "$f holds terminal control codes"; fi
done
n=$(grep -c . $DIR/watch.out)
num_ok "$n >= 8" || fail "only $n lines from a 4 s watch at 0.2 s: $(cat $DIR/watch.out)"
bad=$(grep -vcE '^[0-9]{2}:[0-9]{2}:[0-9]{2} guest (running|paused), [0-9]+ page writes' $DIR/watch.out)
[ "$bad" = 0 ] || fail "$bad lines of the watch are not one status line each: $(cat $DIR/watch.out)"
grep -qE '; precopy round [0-9]+: [0-9]+/[0-9]+ pages \([0-9]+ left\); .* transfer [0-9.]+ MiB/s \(limit 32.0\)' \
    $DIR/watch.out || fail "no progress line with phase, round, pages and rate: $(cat $DIR/watch.out)"
python3 - $DIR/watch-json.out <<'PY' || fail "watch --json: not one JSON object per line: $(head -n3 $DIR/watch-json.out)"
import json, sys
lines = open(sys.argv[1]).read().splitlines()
assert len(lines) >= 8, len(lines)
done = [json.loads(l).get("progress", {}).get("pages_sent", 0) for l in lines]
assert max(done) > 0 and done == sorted(done), done
PY
kill -0 $WD 2>/dev/null && sleep 0.5
kill -INT $WD 2>/dev/null
grep -qE '^[0-9]{2}:[0-9]{2}:[0-9]{2} no guest yet \(receiving\); receiving: [0-9.]+ MiB in [0-9.]+ s, [0-9.]+ MiB/s$' \
    $DIR/watch-dst.out || fail "the receiver's watch lines: $(head -n5 $DIR/watch-dst.out)"
grep -qE 'guest running, [0-9]+ page writes$' $DIR/watch-dst.out || fail "no line once the guest ran there"
M verify --ctl $DIR/d.ctl >/dev/null || fail "the migrated guest does not verify"
echo "ok  status --watch into a pipe: $n lines, one per update, no terminal codes; --json one object per line"
