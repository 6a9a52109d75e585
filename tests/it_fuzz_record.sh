#!/bin/bash
# A short libFuzzer run of the stream parser (preamble, record framing, every
# meta decoder): tests/fuzz/fuzz_record.c under ASan+UBSan for 10 seconds.
# Longer runs: FUZZ_SECONDS=600 tests/it_fuzz_record.sh
set -u
command -v clang >/dev/null || { echo "SKIP: clang (libFuzzer) not installed"; exit 77; }
BUILD=${BUILD:-build}
out=$BUILD/fuzz
mkdir -p "$out/corpus"
cp tests/fuzz/corpus_record/* "$out/corpus/" 2>/dev/null  # seeds: streams with every page encoding
srcs=$(ls common/*.c transfer/*.c)
if ! clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -std=c11 -D_GNU_SOURCE \
        -Iinclude -I. tests/fuzz/fuzz_record.c $srcs $(pkg-config --libs liburing libcrypto) -o "$out/fuzz_record" 2>"$out/build.log"; then
    if grep -q "fuzzer" "$out/build.log" && grep -qi "cannot find\|no such file" "$out/build.log"; then
        echo "SKIP: clang has no libFuzzer runtime"; exit 77
    fi
    cat "$out/build.log"; exit 1
fi
"$out/fuzz_record" -max_total_time="${FUZZ_SECONDS:-10}" -max_len=8192 "$out/corpus" 2>"$out/run.log"
rc=$?
tail -n 3 "$out/run.log"
[ $rc -eq 0 ] || { tail -n 40 "$out/run.log"; exit 1; }
