#!/bin/bash
# A listening `migr recv` cannot be stopped or blocked by a stranger
# (docs/transport.md, "Strangers at a listener"). Without a key, on
# tcp:127.0.0.1 and on unix:, before the real source comes:
#   - a client that connects and sends nothing (kept open),
#   - one that sends 5 bytes and stays,
#   - one that sends garbage and closes,
#   - one that sends a valid preamble and HELLO record header, then garbage
#     (the listener peeks at the whole HELLO and checks its CRC);
# each is dropped (the silent one at the handshake time-out, 500 ms), the
# receiver goes on listening, and the real source migrates. (That a silent
# client does not delay the real one: tests/test_listener.c.) While the guest streams in, a second connection is
# refused (nobody listens any more). With a key, a stranger failing the
# handshake is dropped the same way (tests/it_auth.sh, tests/test_auth.c).
set -u
. "$(dirname "$0")/itlib.sh"
it_setup strangers
command -v python3 >/dev/null || { echo "SKIP: python3 is missing (the test's raw clients)"; exit 77; }

# stranger KIND TARGET FILE: a raw client (it appends KIND to FILE once connected) in the background (tcp:PORT or a unix path).
stranger() {
    python3 - "$1" "$2" "$3" <<'EOF' &
import socket, sys, time
kind, target = sys.argv[1], sys.argv[2]
if target.startswith("tcp:"):
    s = socket.create_connection(("127.0.0.1", int(target[4:])))
else:
    s = socket.socket(socket.AF_UNIX); s.connect(target)
open(sys.argv[3], "a").write(kind + "\n")
if kind == "silent":
    time.sleep(4)
elif kind == "five":
    s.send(b"hello"); time.sleep(4)
elif kind == "garbage":
    s.send(b"GET / HTTP/1.0\r\n\r\n" * 10)
elif kind == "preamble":
    s.send(b"\x89MIGR\r\n\x1a\x01\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00" + b"\xff" * 64); time.sleep(1)
s.close()
EOF
    PIDS+=($!)
}

run_case() {
    local name=$1 listen=$2
    local sctl=$DIR/$name-src.ctl dctl=$DIR/$name-dst.ctl dlog=$DIR/$name-dst.log
    "$MIGR" run --backend proc --mem 64M --workload rate=16M,pattern=random,data=text --ctl "$sctl" \
        2>"$DIR/$name-src.log" &
    local src=$!
    PIDS+=("$src")
    wait_vmm "$src" "$sctl" 15 || fail "$name: the source VMM did not come up"
    "$MIGR" recv --listen "$listen" --ctl "$dctl" --handshake-timeout 500 --timeout 60 2>"$dlog" &
    local dst=$!
    PIDS+=("$dst")
    local url=
    for _ in $(seq 200); do
        url=$(sed -n 's/.*listening on \([^ ]*\)$/\1/p' "$dlog" | head -n1)
        [ -n "$url" ] && break
        sleep 0.05
    done
    [ -n "$url" ] || fail "$name: migr recv did not listen"
    local target
    if [[ $url == tcp:* ]]; then target=tcp:${url##*:}; else target=${url#unix:}; fi
    for k in silent five garbage preamble; do stranger $k "$target" "$DIR/$name-connected"; done
    for _ in $(seq 200); do [ "$(cat "$DIR/$name-connected" 2>/dev/null | wc -l)" -ge 4 ] && break; sleep 0.05; done
    for _ in $(seq 100); do [ "$(grep -c "dropped a connection" "$dlog")" -ge 4 ] && break; sleep 0.05; done
    kill -0 "$dst" 2>/dev/null || fail "$name: strangers stopped the receiver"
    local t0=$(date +%s%N)
    M send --ctl "$sctl" --to "$url" --max-bandwidth 16M --json >"$DIR/$name-send.out" 2>"$DIR/$name-send.err" &
    local snd=$!
    PIDS+=("$snd")
    # While the guest streams in, nobody listens: a second source is refused.
    local refused=0
    for _ in $(seq 60); do
        if grep -q "guest running here" "$dlog"; then break; fi
        if grep -q "receiving\|dropped a connection" "$dlog" || true; then
            if [[ $target == tcp:* ]]; then
                python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', int(sys.argv[1])), 2)" \
                    "${target#tcp:}" 2>/dev/null || refused=1
            else
                python3 -c "import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])" \
                    "$target" 2>/dev/null || refused=1
            fi
            [ $refused = 1 ] && break
        fi
        sleep 0.05
    done
    wait_exit "$snd" 40 || fail "$name: migr send failed: $(cat "$DIR/$name-send.err")"
    local ms=$((($(date +%s%N) - t0) / 1000000))
    [ "$(json_get "$(tail -n1 "$DIR/$name-send.out")" ok)" = true ] || fail "$name: migration failed"
    [ $refused = 1 ] || fail "$name: a second connection during the migration was not refused"
    local drops
    drops=$(grep -c "dropped a connection" "$dlog")
    [ "$drops" -ge 4 ] || fail "$name: $drops strangers reported dropped (expected 4): $(cat "$dlog")"
    grep -q "not a migr source" "$dlog" || fail "$name: garbage not named"
    grep -q "did not begin a migr stream within 500 ms" "$dlog" || fail "$name: silent client not named"
    M verify --ctl "$dctl" >/dev/null || fail "$name: the guest does not verify on the destination"
    M stop --ctl "$dctl" >/dev/null
    wait_exit "$dst" 10
    wait_exit "$src" 10
    echo "ok  $name: 4 strangers dropped, migrated in $ms ms"
}

run_case tcp tcp:127.0.0.1:0
run_case unix "unix:$DIR/in.sock"
exit 0
