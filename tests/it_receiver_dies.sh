#!/bin/bash
# A migration that fails must leave the guest running, intact, on the source:
#   1. the receiver is killed (SIGKILL) in the middle of the stream;
#   2. nobody listens at the destination (unix socket, then TCP port);
#   3. the destination refuses with an ERROR record (a fake receiver in
#      python3; skipped without python3).
# Each time `migr send` must exit 1 saying the guest keeps running on the
# source, the source VMM must stay up, `migr verify` must pass there and the
# guest's write counter must keep increasing. Finally the same guest is
# migrated successfully, to show the failures left the source usable.
# Exit 0 pass, 1 fail, 77 skip (no usable /dev/kvm).
set -u
. "$(dirname "$0")/itlib.sh"
need_kvm
it_setup receiver-dies

SCTL=$DIR/src.ctl
"$MIGR" run --mem 512M --workload rate=256M,pattern=random,data=random --ctl "$SCTL" 2>"$DIR/src.log" &
SRC=$!
PIDS+=("$SRC")
if ! wait_vmm "$SRC" "$SCTL" 15; then
    if ! kill -0 "$SRC" 2>/dev/null && grep -q "not usable here\|KVM_CREATE_VM\|/dev/kvm" "$DIR/src.log"; then
        echo "SKIP: migr run cannot create a VM: $(head -n1 "$DIR/src.log")"
        exit 77
    fi
    fail "the source VMM did not come up"
fi

# The guest must still be ours: VMM alive, running, intact, making progress.
source_is_fine() {
    local what=$1 st w1 w2
    kill -0 "$SRC" 2>/dev/null || fail "$what: the source VMM is gone"
    st=$(M status --ctl "$SCTL") || fail "$what: no status from the source"
    [ "$(json_get "$st" running)" = true ] || fail "$what: the source guest is not running: $st"
    [ "$(json_get "$st" failed)" = false ] || fail "$what: the source guest failed: $st"
    M verify --ctl "$SCTL" >"$DIR/verify.out" 2>&1 ||
        fail "$what: the guest does not verify on the source: $(cat "$DIR/verify.out")"
    w1=$(json_get "$(M status --ctl "$SCTL")" writes)
    sleep 0.3
    w2=$(json_get "$(M status --ctl "$SCTL")" writes)
    num_ok "$w2 > $w1" || fail "$what: the source guest makes no progress ($w1 -> $w2 writes)"
}

# start_recv NAME LISTEN: start `migr recv`, set RECV (pid) and URL.
start_recv() {
    "$MIGR" recv --listen "$2" --ctl "$DIR/$1-dst.ctl" --timeout 60 2>"$DIR/$1-recv.log" &
    RECV=$!
    PIDS+=("$RECV")
    URL=
    for _ in $(seq 200); do
        URL=$(sed -n 's/.*listening on \([^ ]*\)$/\1/p' "$DIR/$1-recv.log" | head -n1)
        [ -n "$URL" ] && return 0
        kill -0 "$RECV" 2>/dev/null || fail "$1: migr recv exited before listening"
        sleep 0.05
    done
    fail "$1: migr recv did not print 'listening on' within 10 s"
}

# send_fails NAME URL: `migr send` must exit 1 and say the guest stays on the source.
send_fails() {
    local name=$1 rc
    M send --ctl "$SCTL" --to "$2" --json >"$DIR/$name-send.out" 2>"$DIR/$name-send.err"
    rc=$?
    [ $rc -eq 1 ] || fail "$name: migr send exited $rc, expected 1"
    check_send_failure "$name"
}

check_send_failure() {
    local name=$1 js
    echo "    $name: $(head -n1 "$DIR/$name-send.err")"
    grep -q "keeps running on the source" "$DIR/$name-send.err" ||
        fail "$name: the error does not say the guest keeps running on the source: $(cat "$DIR/$name-send.err")"
    [ "$(wc -l <"$DIR/$name-send.err")" -le 2 ] || fail "$name: more than a short error on stderr"
    js=$(tail -n1 "$DIR/$name-send.out")
    [ "$(json_get "$js" ok)" = false ] || fail "$name: JSON says ok: $js"
    [ "$(json_get "$js" resumed_on_source)" = true ] || fail "$name: JSON says not resumed_on_source: $js"
    [ "$(json_get "$js" ownership_in_doubt)" != true ] || fail "$name: JSON says ownership_in_doubt: $js"
}

# 1. The receiver dies mid-stream. Once it has built the incoming VM (its vCPU
# thread exists beside the main and control-socket threads) it has read HELLO
# and pages are flowing; it is stopped there
# (so the migration cannot finish, however fast this machine is), the socket
# buffers fill for a moment, then it is killed.
t0=$SECONDS
start_recv dies "unix:$DIR/dies.sock"
"$MIGR" send --ctl "$SCTL" --to "$URL" --json --downtime-ms 1 >"$DIR/dies-send.out" 2>"$DIR/dies-send.err" &
SEND=$!
PIDS+=("$SEND")
for _ in $(seq 1000); do
    n=$(ls "/proc/$RECV/task" 2>/dev/null | wc -l)
    [ "$n" -ge 3 ] && break
    kill -0 "$SEND" 2>/dev/null || fail "dies: migr send ended before the receiver built the guest"
    sleep 0.01
done
[ "$n" -ge 3 ] || fail "dies: the receiver did not start building the guest within 10 s"
kill -STOP "$RECV"
sleep 0.2
kill -0 "$SEND" 2>/dev/null || fail "dies: migr send ended while the receiver was stopped"
kill -KILL "$RECV"
reap "$RECV" 2>/dev/null
wait_exit "$SEND" 15
rc=$?
[ $rc -eq 1 ] || fail "dies: migr send exited $rc, expected 1 (124 = still running)"
check_send_failure dies
pages=$(json_get "$(tail -n1 "$DIR/dies-send.out")" pages_sent)
num_ok "$pages > 0 && $pages < 131072" || fail "dies: pages_sent $pages: not killed mid-stream?"
! grep -q "guest running here" "$DIR/dies-recv.log" || fail "dies: the killed receiver had a running guest"
source_is_fine dies
echo "ok  receiver killed after $pages pages: send exit 1, guest fine on the source ($((SECONDS - t0)) s)"

# 2. Nobody listens: a unix path with no socket, a closed TCP port.
t0=$SECONDS
send_fails nobody-unix "unix:$DIR/nobody.sock"
grep -q "nobody.sock" "$DIR/nobody-unix-send.err" || fail "nobody-unix: the error does not name the URL"
source_is_fine nobody-unix
start_recv port tcp:127.0.0.1:0
kill -TERM "$RECV"
reap "$RECV" 2>/dev/null
[[ "$URL" =~ ^tcp:127\.0\.0\.1:[0-9]+$ ]] || fail "port: unexpected listen URL '$URL'"
send_fails nobody-tcp "$URL"
grep -q "refused" "$DIR/nobody-tcp-send.err" || fail "nobody-tcp: the error does not say the connection was refused"
source_is_fine nobody-tcp
echo "ok  nobody listening (unix, tcp): send exit 1, guest fine on the source ($((SECONDS - t0)) s)"

# 3. A destination that refuses: reads the preamble, answers with an ERROR
# record, closes (what migr recv does when it refuses a stream).
if command -v python3 >/dev/null 2>&1 && python3 -c 'import socket, struct' 2>/dev/null; then
    t0=$SECONDS
    python3 - "$DIR/refuse.sock" >"$DIR/refuse.log" 2>&1 <<'EOF' &
import os, socket, struct, sys
def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF
path = sys.argv[1]
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(path)
s.listen(1)
s.settimeout(30)
print("listening", flush=True)
c, _ = s.accept()
c.settimeout(10)
pre = b""
while len(pre) < 16:
    chunk = c.recv(16 - len(pre))
    if not chunk:
        break
    pre += chunk
msg = b"fake receiver refuses: no room for this guest"
meta = struct.pack("<iI", 28, len(msg)) + msg   # ENOSPC
hdr = struct.pack("<HHII", 9, 0, len(meta), 0)
c.sendall(hdr + meta + struct.pack("<I", crc32c(hdr + meta)))
c.close()
s.close()
os.unlink(path)
print("refused", pre[:8].hex(), flush=True)
EOF
    FAKE=$!
    PIDS+=("$FAKE")
    for _ in $(seq 200); do grep -q listening "$DIR/refuse.log" && break; sleep 0.05; done
    grep -q listening "$DIR/refuse.log" || fail "refuse: the fake receiver did not start"
    send_fails refuse "unix:$DIR/refuse.sock"
    grep -q "refuses: no room for this guest" "$DIR/refuse-send.err" ||
        fail "refuse: the destination's reason is not shown: $(cat "$DIR/refuse-send.err")"
    wait_exit "$FAKE" 10 || fail "refuse: the fake receiver failed: $(cat "$DIR/refuse.log")"
    grep -q "refused 894d4947520d0a1a" "$DIR/refuse.log" || fail "refuse: the fake receiver did not get a migr preamble"
    source_is_fine refuse
    echo "ok  destination refused with ERROR: send exit 1, reason shown, guest fine on the source ($((SECONDS - t0)) s)"
else
    echo "note: python3 not available, the refusing-receiver case was not run"
fi

# 4. After all that, the same guest still migrates.
t0=$SECONDS
start_recv final "unix:$DIR/final.sock"
DST=$RECV
M send --ctl "$SCTL" --to "$URL" --json >"$DIR/final-send.out" 2>"$DIR/final-send.err" ||
    fail "final: migr send failed after the earlier failures"
[ "$(json_get "$(tail -n1 "$DIR/final-send.out")" verified)" = true ] || fail "final: not verified"
wait_exit "$SRC" 10
rc=$?
[ $rc -eq 0 ] || fail "final: the source VMM exited $rc after the migration"
M verify --ctl "$DIR/final-dst.ctl" --wait 5 >"$DIR/verify.out" 2>&1 ||
    fail "final: the guest does not verify on the destination: $(cat "$DIR/verify.out")"
M stop --ctl "$DIR/final-dst.ctl" >/dev/null || fail "final: migr stop failed"
wait_exit "$DST" 10
rc=$?
[ $rc -eq 0 ] || fail "final: the destination VMM exited $rc"
echo "ok  the guest then migrates and verifies on the destination ($((SECONDS - t0)) s)"
exit 0
