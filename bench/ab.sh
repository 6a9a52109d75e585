#!/bin/bash
# A/B of two builds on the same machine, interleaved pair by pair with the
# order alternating (old first in odd pairs, new first in even ones):
# bench_migrate (1 GiB, unix rows) and bench_postcopy (1 GiB, dirty64M rows).
#   bench/ab.sh OLD_BUILD NEW_BUILD OUTDIR [PAIRS=3] ; python3 bench/ab_sum.py OUTDIR
# OLD_BUILD / NEW_BUILD: build directories holding bench/bench_migrate and
# bench/bench_postcopy (`make bench-build` in each checkout).
set -u
[ $# -ge 3 ] || { echo "usage: bench/ab.sh OLD_BUILD NEW_BUILD OUTDIR [PAIRS]" >&2; exit 2; }
OLD=$1 NEW=$2 OUT=$3 N=${4:-3}
for b in "$OLD" "$NEW"; do
    for x in bench_migrate bench_postcopy; do
        [ -x "$b/bench/$x" ] || { echo "bench/ab.sh: $b/bench/$x is missing (make bench-build)" >&2; exit 2; }
    done
done
mkdir -p "$OUT"
for i in $(seq 1 "$N"); do
    if [ $((i % 2)) = 1 ]; then order="old new"; else order="new old"; fi
    for side in $order; do
        B=$OLD; [ "$side" = new ] && B=$NEW
        "$B/bench/bench_migrate" --mem 1G --reps 1 --only unix --json "$OUT/$side-migrate-$i.json" \
            >"$OUT/$side-migrate-$i.log" 2>&1
        echo "$(date +%T) pair $i $side bench_migrate rc=$?"
        "$B/bench/bench_postcopy" --mem 1G --reps 1 --only dirty64M --no-touch \
            --json "$OUT/$side-postcopy-$i.json" >"$OUT/$side-postcopy-$i.log" 2>&1
        echo "$(date +%T) pair $i $side bench_postcopy rc=$?"
    done
done
