#!/bin/bash
# Build every libFuzzer harness of tests/fuzz/ (clang, -fsanitize=fuzzer,
# address,undefined) against an instrumented build of the library and the
# CLI's modules, and run each for FUZZ_SECONDS (default 60) on its corpus
# (tests/fuzz/corpus_NAME/ seeds, grown in $BUILD/fuzz/corpus_NAME/).
#   tests/fuzz/run.sh [HARNESS...]     (make fuzz FUZZ_SECONDS=300)
# Prints one line per harness: executions, seconds, exec/s, corpus size, and
# "crash" with the reproducer's path if it found one (exit 1 then).
set -u
command -v clang >/dev/null || { echo "SKIP: clang (libFuzzer) not installed"; exit 77; }
BUILD=${BUILD:-build}
SECS=${FUZZ_SECONDS:-60}
out=$BUILD/fuzz
obj=$out/obj_all
CFL="-g -O1 -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined -std=c11"
CFL="$CFL -D_GNU_SOURCE -Iinclude -I. $(pkg-config --cflags zlib liblz4 libzstd liburing libcrypto)"
LIBS="$(pkg-config --libs zlib liblz4 libzstd liburing libcrypto libssl) -pthread -lm"
mkdir -p "$obj"
[ -f "$BUILD/obj/hv-glue/kvm/guest_blob.o" ] || make -s "BUILD=$BUILD" all >/dev/null || exit 1

# the library and the CLI (without main.c), instrumented; rebuilt when changed
newest_hdr=$(ls -t include/migr/*.h */*.h | head -n 1)
srcs=$(ls common/*.c engine/*.c transfer/*.c compress/*.c dirty/*.c hv-glue/*.c hv-glue/*/*.c model/*.c cli/*.c |
       grep -v '^cli/main.c$')
for s in $srcs; do
    o="$obj/$(echo "$s" | tr / _).o"
    [ "$o" -nt "$s" ] && [ "$o" -nt "$newest_hdr" ] || echo "$s"
done | xargs -r -P 2 -I{} sh -c 'clang $0 -c {} -o "$1/$(echo {} | tr / _).o" || exit 255' "$CFL" "$obj" \
    2>"$out/build_all.log" || { cat "$out/build_all.log"; exit 1; }
rm -f "$out/libmigr_fuzz.a"
ar rcs "$out/libmigr_fuzz.a" "$obj"/*.o "$BUILD/obj/hv-glue/kvm/guest_blob.o"

harnesses=("$@")
[ ${#harnesses[@]} -gt 0 ] || harnesses=($(ls tests/fuzz/fuzz_*.c | xargs -n1 basename | sed 's/\.c$//'))
rc=0
for h in "${harnesses[@]}"; do
    clang $CFL -fsanitize=fuzzer tests/fuzz/$h.c "$out/libmigr_fuzz.a" $LIBS -o "$out/$h" 2>"$out/$h.build.log" ||
        { cat "$out/$h.build.log"; rc=1; continue; }
    corpus=$out/corpus_${h#fuzz_}
    rm -rf "$out/crash_$h"
    mkdir -p "$corpus" "$out/crash_$h"
    seeds=tests/fuzz/corpus_${h#fuzz_}
    [ -d "$seeds" ] || seeds=
    (cd "$out/crash_$h" && "../$h" -max_total_time="$SECS" -max_len=65536 -timeout=10 -print_final_stats=1 \
        "../corpus_${h#fuzz_}" ${seeds:+"$OLDPWD/$seeds"} >"../$h.run.log" 2>&1)
    r=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out/$h.run.log")
    secs=$(sed -n 's/^stat::.*_time.*//p' "$out/$h.run.log")
    n=$(ls "$corpus" | wc -l)
    if [ $r -ne 0 ]; then
        echo "$h: CRASH after ${execs:-?} executions: $(ls "$out/crash_$h" | head -n 1) (log $out/$h.run.log)"
        grep -m3 "ERROR\|SUMMARY\|fuzz_" "$out/$h.run.log"
        rc=1
    else
        echo "$h: ${execs:-?} executions in ${SECS} s ($(( ${execs:-0} / SECS )) exec/s), corpus $n, no finding"
    fi
done
exit $rc
