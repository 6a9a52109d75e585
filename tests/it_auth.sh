#!/bin/bash
# Authentication through the CLI (docs/transport.md, "Authentication"):
# `migr recv --key-file` and `migr send --key-file` over TCP on 127.0.0.1.
#   - a key file others can read is refused by both commands;
#   - a receiver on a non-loopback address without a key refuses to start;
#   - a source with the wrong key, and one without a key, are refused: the
#     guest stays on the source, and the receiver goes on listening;
#   - the right key migrates in post-copy: the fault channel (which the
#     destination opens back to the source over TCP) is authenticated too;
#     the guest verifies on the destination;
#   - from there on to a third VMM over tcp:...?encrypt=1, in post-copy
#     again (the fault channel encrypted as well), verified.
# The proc backend (KVM is not needed for what is tested here).
set -u
. "$(dirname "$0")/itlib.sh"
it_setup auth

head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$DIR/k1"
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$DIR/k2"
cp "$DIR/k1" "$DIR/kbad"
chmod 600 "$DIR/k1" "$DIR/k2"
chmod 644 "$DIR/kbad"
sctl=$DIR/src.ctl dctl=$DIR/dst.ctl

"$MIGR" run --backend proc --mem 64M --workload rate=32M,pattern=random,data=text --ctl "$sctl" 2>"$DIR/src.log" &
src=$!
PIDS+=("$src")
wait_vmm "$src" "$sctl" 15 || fail "the source VMM did not come up"

# Refusals before anything listens.
M recv --listen tcp:0.0.0.0:0 --ctl "$DIR/x.ctl" --timeout 5 2>"$DIR/x.err" && fail "recv on 0.0.0.0 without a key started"
grep -q "give a key (--key-file)" "$DIR/x.err" || fail "recv on 0.0.0.0: $(cat "$DIR/x.err")"
M recv --listen tcp:127.0.0.1:0 --key-file "$DIR/kbad" --ctl "$DIR/x.ctl" --timeout 5 2>"$DIR/x.err" &&
    fail "recv with a mode-644 key file started"
grep -q "chmod 600" "$DIR/x.err" || fail "recv with a 644 key: $(cat "$DIR/x.err")"
M send --ctl "$sctl" --to tcp:127.0.0.1:1 --key-file "$DIR/kbad" 2>"$DIR/x.err" && fail "send with a 644 key file ran"
grep -q "chmod 600" "$DIR/x.err" || fail "send with a 644 key: $(cat "$DIR/x.err")"

"$MIGR" recv --listen tcp:127.0.0.1:0 --key-file "$DIR/k1" --handshake-timeout 2000 --ctl "$dctl" --timeout 60 \
    2>"$DIR/dst.log" &
dst=$!
PIDS+=("$dst")
url=
for _ in $(seq 200); do
    url=$(sed -n 's/.*listening on \([^ ]*\)$/\1/p' "$DIR/dst.log" | head -n1)
    [ -n "$url" ] && break
    kill -0 "$dst" 2>/dev/null || fail "migr recv exited before listening"
    sleep 0.05
done
[ -n "$url" ] || fail "migr recv did not print 'listening on'"

M send --ctl "$sctl" --to "$url" --key-file "$DIR/k2" --json >"$DIR/wrong.out" 2>"$DIR/wrong.err" &&
    fail "a source with the wrong key migrated"
grep -q "wrong key" "$DIR/wrong.err" || fail "wrong key: $(cat "$DIR/wrong.err")"
[ "$(json_get "$(tail -n1 "$DIR/wrong.out")" resumed_on_source)" = true ] || fail "wrong key: guest not kept on the source"
M send --ctl "$sctl" --to "$url" --json >"$DIR/nokey.out" 2>"$DIR/nokey.err" && fail "a source without a key migrated"
kill -0 "$dst" 2>/dev/null || fail "the receiver exited after strangers connected"
for _ in $(seq 60); do
    [ "$(grep -c "dropped a connection" "$DIR/dst.log")" -ge 2 ] && break
    sleep 0.05
done
grep -q "its key differs from ours" "$DIR/dst.log" || fail "receiver did not say why it dropped the wrong key"
grep -q "without authenticating" "$DIR/dst.log" || fail "receiver did not say why it dropped the keyless source"
M verify --ctl "$sctl" >/dev/null || fail "the guest does not verify on the source after the refusals"

M send --ctl "$sctl" --to "$url" --key-file "$DIR/k1" --mode postcopy --json >"$DIR/ok.out" 2>"$DIR/ok.err" ||
    fail "migration with the right key failed: $(cat "$DIR/ok.err")"
js=$(tail -n1 "$DIR/ok.out")
[ "$(json_get "$js" ok)" = true ] || fail "right key: $js"
[ "$(json_get "$js" fault_channel)" = true ] || fail "post-copy did not use the (authenticated) fault channel: $js"
grep -q "$(cat "$DIR/k1")" "$DIR/ok.out" "$DIR/ok.err" "$DIR/dst.log" "$DIR/src.log" && fail "the key appears in output"
wait_exit "$src" 15 || fail "the source VMM did not exit after the migration"
for _ in $(seq 100); do
    st=$(M status --ctl "$dctl" 2>/dev/null) && [ "$(json_get "$st" running)" = true ] && break
    sleep 0.1
done
M verify --ctl "$dctl" >"$DIR/verify.out" 2>&1 || fail "the guest does not verify on the destination: $(cat "$DIR/verify.out")"

# On again, encrypted (the receiver asks with ?encrypt=1; its bound URL says
# so), in post-copy: the fault channel is authenticated and encrypted too.
ectl=$DIR/enc.ctl
"$MIGR" recv --listen 'tcp:127.0.0.1:0?encrypt=1' --key-file "$DIR/k1" --ctl "$ectl" --timeout 60 2>"$DIR/enc.log" &
enc=$!
PIDS+=("$enc")
url=
for _ in $(seq 200); do
    url=$(sed -n 's/.*listening on \([^ ]*\)$/\1/p' "$DIR/enc.log" | head -n1)
    [ -n "$url" ] && break
    sleep 0.05
done
[[ "$url" == *encrypt=1 ]] || fail "encrypted receiver: listening on '$url'"
grep -q "the stream is encrypted" "$DIR/enc.log" || fail "encrypted receiver did not say so"
M send --ctl "$dctl" --to "$url" --key-file "$DIR/k1" --mode postcopy --json >"$DIR/enc.out" 2>"$DIR/enc.err" ||
    fail "encrypted migration failed: $(cat "$DIR/enc.err")"
js=$(tail -n1 "$DIR/enc.out")
[ "$(json_get "$js" fault_channel)" = true ] || fail "encrypted post-copy did not use the fault channel: $js"
wait_exit "$dst" 15 || fail "the middle VMM did not exit after the second migration"
for _ in $(seq 100); do
    st=$(M status --ctl "$ectl" 2>/dev/null) && [ "$(json_get "$st" running)" = true ] && break
    sleep 0.1
done
M verify --ctl "$ectl" >"$DIR/verify2.out" 2>&1 || fail "the guest does not verify after the encrypted move: $(cat "$DIR/verify2.out")"
M stop --ctl "$ectl" >/dev/null || fail "stop failed"
wait_exit "$enc" 10
exit 0
