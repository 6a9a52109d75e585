#!/bin/bash
# Benchmark runner (`make bench` builds first, then calls this): runs every
# $BUILD/bench/bench_* binary with its defaults (plus --quick when
# BENCH_QUICK=1), then bench/plot.py. Exit codes of a benchmark: 0 ok,
# 77 skip (its "SKIP: reason" line is shown), else failed.
# Results: bench/results/ (JSON per benchmark, PNG plots when matplotlib is installed).
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
args=()
[ "${BENCH_QUICK:-0}" = 1 ] && args+=(--quick)
mkdir -p bench/results
ok=0; fail=0; skip=0; failed=()
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for b in "$BUILD"/bench/bench_*; do
    [ -x "$b" ] || continue
    case "$b" in *.d|*.o) continue;; esac
    name=$(basename "$b")
    echo "=== $name ${args[*]:-}"
    start=$(date +%s)
    "$b" "${args[@]}" | tee "$out"
    rc=${PIPESTATUS[0]}
    el=$(( $(date +%s) - start ))
    if [ "$rc" -eq 0 ]; then
        ok=$((ok+1)); echo "=== $name: ok (${el}s)"
    elif [ "$rc" -eq 77 ]; then
        skip=$((skip+1)); echo "=== $name: SKIP $(grep -m1 '^SKIP:' "$out" | sed 's/^SKIP: *//')"
    else
        fail=$((fail+1)); failed+=("$name"); echo "=== $name: FAIL (exit $rc, ${el}s)"
    fi
    echo
done
# Debian's python3-matplotlib (scripts/install-deps.sh --bench) is for
# /usr/bin/python3, which another python3 earlier in PATH may hide.
py=""
for p in python3 /usr/bin/python3; do
    command -v "$p" >/dev/null || continue
    [ -z "$py" ] && py=$p
    if "$p" -c 'import matplotlib' 2>/dev/null; then py=$p; break; fi
done
if [ -n "$py" ]; then
    "$py" bench/plot.py bench/results || true
else
    echo "plot: no python3; no plots drawn"
fi
echo "results: $(pwd)/bench/results/ ($(cd bench/results && ls | tr '\n' ' '))"
[ ${#failed[@]} -gt 0 ] && echo "failed: ${failed[*]}"
echo "$ok ok, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
