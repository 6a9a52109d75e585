#!/bin/bash
# `migr demo` (what `make demo` runs) end to end on a small guest: a live
# migration between two VMM processes, then a hand-over to a fresh VMM; the
# JSON summary must say every step verified and the guest kept running. Uses
# the proc backend by itself where /dev/kvm is missing.
set -u
. "$(dirname "$0")/itlib.sh"
it_setup demo
out=$(TMPDIR=$DIR M demo --mem 64M --rate 32M --json 2>"$DIR/demo.err") || fail "migr demo failed: $out"
last=$(tail -n1 <<<"$out")
for f in ok verified workload_verified guest_progress_after handover_verified handover_progress_after; do
    [ "$(json_get "$last" $f)" = true ] || fail "demo summary: $f is not true: $last"
done
[ "$(json_get "$last" handover_pages_copied)" = 0 ] || fail "the hand-over copied pages: $last"
num_ok "$(json_get "$last" downtime_ms) > 0" || fail "no downtime measured: $last"
compgen -G "$DIR/migr-demo-*" >/dev/null && fail "migr demo left its directory behind: $(ls -d "$DIR"/migr-demo-*)"
echo "ok: $(json_get "$last" downtime_ms) ms migration downtime, $(json_get "$last" handover_downtime_ms) ms hand-over"
