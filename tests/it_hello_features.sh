#!/bin/bash
# HELLO's features (docs/format.md, HELLO): a destination that lacks a feature
# the stream needs refuses it at HELLO, naming the feature, instead of failing
# mid-stream; the source says so and the guest keeps running there. The same
# destination then takes a stream it can read. The destination is the real
# CLI built without zstd (tests/no_zstd.c, -Wl,--wrap=migr_features_supported).
set -u
. "$(dirname "$0")/itlib.sh"
NOZSTD=${NOZSTD:-$(dirname "$MIGR")/tests/migr-no-zstd}
[ -x "$NOZSTD" ] || { echo "FAIL: $NOZSTD is not built (make $NOZSTD)"; exit 1; }
it_setup features

"$MIGR" run --backend proc --mem 32M --workload rate=16M,pattern=random --ctl "$DIR/vm.ctl" 2>"$DIR/run.log" &
PIDS+=($!)
wait_vmm $! "$DIR/vm.ctl" 20 || fail "source VMM did not start"
"$NOZSTD" recv --listen "unix:$DIR/m.sock" --ctl "$DIR/d.ctl" 2>"$DIR/dst.log" &
dst=$!; PIDS+=($dst)
wait_vmm $dst "$DIR/d.ctl" 20 || fail "destination did not start"

M send --ctl "$DIR/vm.ctl" --to "unix:$DIR/m.sock" --mode precopy --compress zstd >"$DIR/send1.out" 2>"$DIR/send1.err"
rc=$?
[ $rc = 1 ] || fail "a zstd stream to a destination without zstd: migr send exit $rc (expected 1)"
want="the source needs feature 'zstd stream' that this destination lacks"
grep -q "$want" "$DIR/send1.err" || fail "migr send does not report the refusal: $(cat "$DIR/send1.err")"
grep -q "record 1 (HELLO)" "$DIR/send1.err" || fail "the refusal is not at HELLO: $(cat "$DIR/send1.err")"
grep -q "keeps running on the source" "$DIR/send1.err" "$DIR/send1.out" || fail "migr send does not say where the guest is"
for _ in $(seq 50); do grep -q "$want" "$DIR/dst.log" && break; sleep 0.1; done
grep -q "$want" "$DIR/dst.log" || fail "the destination does not name the missing feature"
w1=$(writes_of "$DIR/vm.ctl"); sleep 0.3; w2=$(writes_of "$DIR/vm.ctl")
[ "$w2" -gt "$w1" ] || fail "the guest does not run on the source after the refusal ($w1 -> $w2)"
M verify --ctl "$DIR/vm.ctl" >/dev/null || fail "the guest on the source does not verify"

# The same destination (still listening) takes what it can read.
M send --ctl "$DIR/vm.ctl" --to "unix:$DIR/m.sock" --mode precopy --compress lz4 >"$DIR/send2.out" 2>"$DIR/send2.err" ||
    fail "an lz4 stream to the destination without zstd failed: $(cat "$DIR/send2.err")"
M verify --ctl "$DIR/d.ctl" >/dev/null || fail "the guest on the destination does not verify"
M stop --ctl "$DIR/d.ctl" >/dev/null
wait_exit $dst 10 >/dev/null
exit 0
