#!/bin/bash
# A short libFuzzer run of the page codecs: tests/fuzz/fuzz_xbzrle.c (the
# XBZRLE delta: decoder against a model of QEMU's, all encoders agree and
# round-trip), tests/fuzz/fuzz_codecs.c (every per-page codec's decoder and
# encoder) and tests/fuzz/fuzz_lanes.c (the stream codecs LZ4S and ZSTDS),
# under ASan+UBSan, side by side for 4 seconds each.
# Longer runs: FUZZ_SECONDS=600 tests/it_fuzz_codecs.sh
# (The system lz4/zstd/zlib are not instrumented: ASan sees their accesses
# only through the buffers migr hands them.)
set -u
command -v clang >/dev/null || { echo "SKIP: clang (libFuzzer) not installed"; exit 77; }
BUILD=${BUILD:-build}
out=$BUILD/fuzz
harnesses=(fuzz_xbzrle fuzz_codecs fuzz_lanes)
CFL="-g -O1 -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined -std=c11"
CFL="$CFL -D_GNU_SOURCE -Iinclude -I."
mkdir -p "$out/obj_codecs"

# The library sources (those changed since the last run, or all when a
# header changed), two at a time; then both harnesses at once.
newest_hdr=$(ls -t include/migr/*.h compress/*.h | head -n 1)
for s in compress/*.c common/*.c; do
    o="$out/obj_codecs/$(echo "$s" | tr / _).o"
    [ "$o" -nt "$s" ] && [ "$o" -nt "$newest_hdr" ] || echo "$s"
done | xargs -r -P 2 -I{} sh -c 'clang $0 -c {} -o "$1/obj_codecs/$(echo {} | tr / _).o"' \
        "$CFL" "$out" 2>"$out/build_codecs.log"
if [ "${PIPESTATUS[1]}" -ne 0 ]; then
    cat "$out/build_codecs.log"; exit 1
fi
pids=()
for h in "${harnesses[@]}"; do
    mkdir -p "$out/corpus_$h"
    clang $CFL -fsanitize=fuzzer "tests/fuzz/$h.c" "$out"/obj_codecs/*.o -llz4 -lzstd -lz \
        -pthread -o "$out/$h" 2>"$out/build_$h.log" &
    pids+=($!)
done
for i in "${!harnesses[@]}"; do
    h=${harnesses[$i]}
    if ! wait "${pids[$i]}"; then
        if grep -q "fuzzer" "$out/build_$h.log" && grep -qi "cannot find\|no such file" "$out/build_$h.log"; then
            echo "SKIP: clang has no libFuzzer runtime"; exit 77
        fi
        cat "$out/build_$h.log"; exit 1
    fi
done

pids=()
for h in "${harnesses[@]}"; do
    "$out/$h" -max_total_time="${FUZZ_SECONDS:-4}" -max_len=20000 "$out/corpus_$h" \
        2>"$out/run_$h.log" &
    pids+=($!)
done
rc=0
for i in "${!harnesses[@]}"; do
    wait "${pids[$i]}" || rc=1
done
for h in "${harnesses[@]}"; do
    echo "$h: $(grep -E '^(#[0-9]+|Done)' "$out/run_$h.log" | tail -n 1)"
done
if [ $rc -ne 0 ]; then
    for h in "${harnesses[@]}"; do tail -n 40 "$out/run_$h.log"; done
    exit 1
fi
