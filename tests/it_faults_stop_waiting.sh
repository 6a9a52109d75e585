#!/bin/bash
# `migr stop` on a receiver that is still listening (no guest yet) must stop
# it: answer, exit 0, remove its sockets. (It used to wait forever: the
# control thread handed `stop` to the main thread, which takes commands only
# once a guest runs.)
set -u
. "$(dirname "$0")/itlib.sh"
it_setup stopwait
"$MIGR" recv --listen "unix:$DIR/m.sock" --ctl "$DIR/d.ctl" 2>"$DIR/dst.log" &
dst=$!; PIDS+=($dst)
wait_vmm $dst "$DIR/d.ctl" 20 || fail "receiver did not start"
timeout 5 "$MIGR" stop --ctl "$DIR/d.ctl" >"$DIR/stop.out" 2>&1
rc=$?
[ $rc != 124 ] || fail "migr stop on a listening receiver still waits for a guest after 5 s"
[ $rc = 0 ] || fail "migr stop on a listening receiver: exit $rc: $(cat "$DIR/stop.out")"
wait_exit $dst 10; rc=$?
[ $rc != 124 ] || fail "the receiver did not exit after migr stop"
[ ! -e "$DIR/m.sock" ] || fail "the receiver left its listening socket behind"
exit 0
