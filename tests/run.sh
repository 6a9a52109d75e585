#!/bin/bash
# Test runner: runs every tests/test_* binary and tests/it_*.sh script with a
# timeout, prints one line per test (with the previous run's time beside the
# current one) and ends with "N passed, N failed, N skipped".
# Exit codes of a test: 0 pass, 77 skip (its "SKIP: reason" line is shown), else fail.
set -u
BUILD=${BUILD:-build}
export BUILD MIGR=${MIGR:-$PWD/$BUILD/migr}
TIMEOUT=${TEST_TIMEOUT:-300}
LOGDIR=$BUILD/test-logs
TIMES=$BUILD/test-times
mkdir -p "$LOGDIR"; touch "$TIMES"
pass=0; fail=0; skip=0; failed=()
filter=${1:-}
tests=()
for t in "$BUILD"/tests/test_* tests/it_*.sh; do
    [ -e "$t" ] || continue
    case "$t" in *.d|*.o) continue;; esac
    [ -n "$filter" ] && [[ "$t" != *"$filter"* ]] && continue
    tests+=("$t")
done
for t in "${tests[@]}"; do
    name=$(basename "$t" .sh)
    log="$LOGDIR/$name.log"
    start=$(date +%s%N)
    timeout -k 10 "$TIMEOUT" "$t" >"$log" 2>&1
    rc=$?
    ms=$(( ($(date +%s%N) - start) / 1000000 ))
    el="$((ms / 1000)).$(( (ms % 1000) / 100 ))"
    prev=$(awk -v n="$name" '$1==n {print $2}' "$TIMES")
    tm="${el}s"
    [ -n "$prev" ] && tm="$tm (was ${prev}s)"
    if [ $rc -eq 0 ]; then
        pass=$((pass+1)); echo "PASS  $name  $tm"
    elif [ $rc -eq 77 ]; then
        skip=$((skip+1)); echo "SKIP  $name  $(grep -m1 '^SKIP:' "$log" | sed 's/^SKIP: *//')"
    else
        fail=$((fail+1)); failed+=("$name"); echo "FAIL  $name  $tm (exit $rc)"
        [ $rc -eq 124 ] && echo "      timed out after ${TIMEOUT}s"
        tail -n 25 "$log" | sed 's/^/      | /'
    fi
    { grep -v "^$name " "$TIMES"; printf "%s %s\n" "$name" "$el"; } >"$TIMES.new" && mv "$TIMES.new" "$TIMES"
done
[ ${#failed[@]} -gt 0 ] && echo "failed: ${failed[*]} (logs in $LOGDIR/)"
echo "$pass passed, $fail failed, $skip skipped"
[ $fail -eq 0 ]
