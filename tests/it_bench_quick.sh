#!/bin/bash
# `migr bench NAME --quick` for every benchmark `migr bench --help` lists:
# `migr bench NAME --help` shows that benchmark's own help (exit 0); a quick
# run takes seconds, passes its options through (--json into our directory,
# never over bench/results/), prints its table and writes valid JSON. A
# benchmark that needs something absent exits 77 with "SKIP: reason" (said
# here too). An unknown benchmark is a usage error (exit 2).
# Exit 0 pass, 1 fail, 77 skip (no benchmark could run).
set -u
. "$(dirname "$0")/itlib.sh"
it_setup bench-quick

names=$("$MIGR" bench --help 2>&1 | awk '/^  [a-z]+ / {print $1}')
[ -n "$names" ] || fail "migr bench --help lists no benchmark"
"$MIGR" bench nosuch >/dev/null 2>&1
[ $? -eq 2 ] || fail "an unknown benchmark does not exit 2"
ran=0
for b in $names; do
    out=$("$MIGR" bench "$b" --help 2>&1) || fail "migr bench $b --help exits non-zero: $out"
    grep -q "usage: bench_$b" <<<"$out" || fail "migr bench $b --help does not show bench_$b's help: $(head -n2 <<<"$out")"
    grep -q -- "--quick" <<<"$out" || fail "bench_$b --help does not mention --quick"
    t0=$(date +%s%N)
    timeout -k 5 120 "$MIGR" bench "$b" --quick --json "$DIR/$b.json" >"$DIR/$b.out" 2>"$DIR/$b.err"
    rc=$?
    s=$((($(date +%s%N) - t0) / 1000000000))
    if [ $rc -eq 77 ]; then
        echo "SKIP: bench $b: $(grep -m1 -h '^SKIP:' "$DIR/$b.out" "$DIR/$b.err" | sed 's/^SKIP: *//')"
        continue
    fi
    [ $rc -eq 0 ] || fail "migr bench $b --quick exited $rc after ${s}s: $(tail -n5 "$DIR/$b.out" "$DIR/$b.err")"
    num_ok "$s <= 60" || fail "migr bench $b --quick took ${s}s (a quick run takes seconds)"
    [ "$(grep -c . "$DIR/$b.out")" -ge 3 ] || fail "bench $b printed no table: $(cat "$DIR/$b.out")"
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert isinstance(d, dict) and d' "$DIR/$b.json" \
        2>"$DIR/$b.json.err" || fail "bench $b: $DIR/$b.json is not a JSON object: $(cat "$DIR/$b.json.err")"
    echo "ok  bench $b --quick: ${s}s, $(grep -c . "$DIR/$b.out") lines, $(wc -c <"$DIR/$b.json") bytes of JSON"
    ran=$((ran + 1))
done
if [ $ran -eq 0 ]; then
    echo "SKIP: no benchmark could run here"
    exit 77
fi
