#!/bin/bash
# migr model: with the paper's parameters the results agree with section 4.3
# of seed paper 002 (Warm-VM Reboot best at every cluster size, migration
# beating cold reboot only from about 11,000 hosts); --json is valid and says
# the same; --from-bench adds migr's rows; impossible inputs give exit 2, one
# line "migr model: <what>" naming the problem, the usage, and nothing on
# stdout; --plot draws a PNG or says why it cannot. No KVM needed.
# Exit 0 pass, 1 fail.
set -u
MIGR=${MIGR:-build/migr}
[ -x "$MIGR" ] || { echo "FAIL: $MIGR is not an executable (run make all)"; exit 1; }
command -v python3 >/dev/null || { echo "SKIP: python3 is needed to check the JSON"; exit 77; }

DIR=$(mktemp -d /tmp/migr-it-model.XXXXXX) || exit 1
trap 'rm -rf "$DIR"' EXIT
trap 'exit 143' TERM INT HUP PIPE
failures=0
bad() { echo "FAIL: $*"; failures=$((failures + 1)); }

run_migr() {
    timeout -k 2 30 "$MIGR" "$@" >"$DIR/out" 2>"$DIR/err"
    RC=$?
    OUT=$(cat "$DIR/out")
    ERR=$(cat "$DIR/err")
}

# check_json PYTHON-EXPRESSIONS...: each must hold for d = the JSON on stdout.
check_json() {
    local what=$1
    shift
    python3 - "$DIR/out" "$@" <<'EOF' || bad "$what: JSON check failed"
import json, sys
d = json.load(open(sys.argv[1]))
ok = True
for expr in sys.argv[2:]:
    if not eval(expr):
        print(f"  not true: {expr}")
        ok = False
sys.exit(0 if ok else 1)
EOF
}

# ---- the paper's conclusions with its parameters ----
run_migr model
[ $RC -eq 0 ] || bad "migr model: exit $RC: $ERR"
grep -q '^best: Warm-VM Reboot at every cluster size$' <<<"$OUT" || bad "default: Warm-VM Reboot is not best everywhere"
grep -q '^crossover: migration beats Cold-VM Reboot from m = 11230 hosts' <<<"$OUT" ||
    bad "default: crossover is not 11230: $(grep crossover <<<"$OUT")"
rows=$(awk '$1 ~ /^[0-9]+$/ && NF == 7' <<<"$OUT")
[ "$(wc -l <<<"$rows")" -eq 16 ] || bad "default: expected 16 rows for m = 1-100000, got $(wc -l <<<"$rows")"
awk '$7 != "warm" { exit 1 }' <<<"$rows" || bad "default: a row's best is not warm"

run_migr model --json --hosts 1-1000000
[ $RC -eq 0 ] || bad "migr model --json: exit $RC: $ERR"
check_json "default --json" \
    'd["crossover_hosts"] == 11230 and d["crossover_method"] == "live"' \
    '[m["name"] for m in d["methods"]] == ["warm", "cold", "migrate", "live", "live-rc"]' \
    'all(r["best"] == "warm" for r in d["rows"])' \
    'd["best_small"] == "warm" and d["best_switch_hosts"] is None' \
    'd["params"]["t_vmm_s"] == 28 * 86400 and d["params"]["t_os_s"] == 7 * 86400' \
    '{m["name"]: m["beats_cold_from_hosts"] for m in d["methods"]} == {"warm": 1, "cold": None, "migrate": 11231, "live": 11230, "live-rc": 23746}' \
    'all(m["beats_warm_from_hosts"] is None for m in d["methods"])' \
    'abs(d["methods"][0]["factor"] - (1 - 812.232001488 / 2419200)) < 1e-11' \
    'd["rows"][0]["hosts"] == 1 and d["rows"][0]["migrate"] == 0 and d["rows"][-1]["hosts"] == 1000000'

# ---- edge cases through the CLI ----
run_migr model --json --hosts 1 --t-vmm 7d --t-os 14d
[ $RC -eq 0 ] || bad "T_vmm < T_os: exit $RC: $ERR"
check_json "T_vmm < T_os" 'd["methods"][1]["os_rejuvenations"] == 0' 'd["rows"][0]["best"] == "warm"'
run_migr model --json --vms 1 --hosts 1,2
[ $RC -eq 0 ] || bad "--vms 1: exit $RC: $ERR"
check_json "--vms 1" 'd["params"]["r_os_s"] == 0' 'abs(d["params"]["d_warm_s"] - 59 / 11) < 1e-9' \
    'd["methods"][2]["period_s"] == 0' 'any("n = 11" in n for n in d["notes"])'
# D_os given, R_os not: R_os follows as (n−1)·D_os.
run_migr model --json --d-os 30s --hosts 1
check_json "--d-os 30s" 'd["params"]["r_os_s"] == 300'

# ---- --from-bench: migr's own rows ----
cat >"$DIR/bench.json" <<'EOF'
{"mode":"precopy","transport":"unix","tracker":"kvm-bitmap","ok":true,"error":"","total_ms":1500.0,"downtime_ms":20.0,"ram_bytes":1073741824,"round_stats":[{"round":1,"ms":1400}]}
{"mode":"precopy","transport":"unix","tracker":"kvm-bitmap","ok":true,"error":"","total_ms":2500.0,"downtime_ms":40.0,"ram_bytes":1073741824,"round_stats":[]}
{"mode":"precopy","ok":false,"error":"receiver died","total_ms":10,"downtime_ms":0,"ram_bytes":1073741824}
{"mode":"handover","transport":"unix","tracker":"","ok":true,"error":"","total_ms":3.0,"downtime_ms":2.5,"ram_bytes":1073741824,"round_stats":[]}
{"mode":"warm","ok":true,"total_ms":60.0,"downtime_ms":45.0,"ram_bytes":1073741824}
EOF
run_migr model --json --from-bench "$DIR/bench.json" --hosts 1,100,100000
[ $RC -eq 0 ] || bad "--from-bench: exit $RC: $ERR"
check_json "--from-bench" \
    '[m["name"] for m in d["methods"]][-3:] == ["migr-live", "migr-handover", "migr-warm"]' \
    'd["bench"]["precopy"]["count"] == 2 and d["bench"]["failed"] == 1 and d["bench"]["handover"]["count"] == 1' \
    'd["bench"]["warm"]["count"] == 1 and d["methods"][7]["downtime_s"] == 0.045' \
    'd["methods"][5]["downtime_s"] == 0.03 and abs(d["methods"][5]["period_s"] - 22) < 1e-9' \
    'd["methods"][5]["spare_host"] and not d["methods"][6]["spare_host"]' \
    'all(r["best"] == "migr-handover" for r in d["rows"])' \
    'd["crossover_hosts"] == 11230'
run_migr model --from-bench "$DIR/bench.json"
grep -q '^note: migr-handover replaces the VMM process only' <<<"$OUT" || bad "--from-bench: no hand-over caveat"
head -n1 "$DIR/bench.json" >"$DIR/precopy.json"
run_migr model --from-bench "$DIR/precopy.json" --vm-ram 512M --json --hosts 10
check_json "--from-bench precopy only" '[m["name"] for m in d["methods"]][-1] == "migr-live"' \
    'abs(d["methods"][-1]["period_s"] - 11 * 0.75) < 1e-9' 'any("no hand-over" in n for n in d["notes"])'
echo '{"bench":"migrate","rows":[]}' >"$DIR/none.json"
run_migr model --from-bench "$DIR/none.json"
[ $RC -eq 1 ] || bad "--from-bench without summaries: exit $RC, expected 1"
grep -q 'no successful migration summary' <<<"$ERR" || bad "--from-bench without summaries: $ERR"

# ---- impossible inputs: exit 2, "migr model: ...", usage, empty stdout ----
expect_usage_error() {
    local pat=$1 first second
    shift
    run_migr model "$@"
    first=$(head -n1 <<<"$ERR")
    second=$(sed -n 2p <<<"$ERR")
    [ $RC -eq 2 ] || { bad "migr model $*: exit $RC, expected 2 ($first)"; return; }
    [[ "$first" == "migr model: "* ]] || bad "migr model $*: first stderr line: $first"
    [[ "$second" == "usage: migr model "* ]] || bad "migr model $*: no usage after the error: $second"
    grep -Eq -- "$pat" <<<"$first" || bad "migr model $*: the error does not name the problem (/$pat/): $first"
    [ -z "$OUT" ] || bad "migr model $*: wrote to stdout"
}
expect_usage_error 't-vmm.*negative' --t-vmm -5
expect_usage_error 'd-os.*negative' --d-os -1s
expect_usage_error 'r-cold.*negative' --r-cold -397
expect_usage_error 'T_os.*> 0' --t-os 0
expect_usage_error 'delta.*\[0, 1\]' --delta 1.5
expect_usage_error 'omega-cold.*\[0, 1\]' --omega-cold -0.1
expect_usage_error 'gamma-live.*\[0, 1\]' --gamma-live 2
expect_usage_error 'gamma.*not a number' --gamma abc
expect_usage_error 'migr-gamma.*\[0, 1\]' --from-bench "$DIR/bench.json" --migr-gamma 1.1
expect_usage_error 'D_os.*shorter than T_os' --d-os 8d
expect_usage_error 'D_c.*shorter than T_vmm' --d-cold 29d
expect_usage_error 'unknown time unit' --t-os 7x
expect_usage_error 'vms' --vms 0
expect_usage_error 'hosts' --hosts 0
expect_usage_error 'backwards' --hosts 100-10
expect_usage_error 'needs a value' --hosts
expect_usage_error 'unknown option' --t-hypervisor 3d
expect_usage_error 'need --from-bench' --vm-ram 1G
expect_usage_error 'from-bench.*No such file' --from-bench "$DIR/missing.json"

run_migr model --help
[ $RC -eq 0 ] && [[ "$OUT" == "usage: migr model "* ]] || bad "migr model --help: exit $RC"
grep -q -- '--t-vmm TIME' <<<"$OUT" || bad "--help does not list --t-vmm"
run_migr --help
grep -q '^  model ' <<<"$OUT" || bad "migr --help does not list model"

# ---- --plot ----
run_migr model --plot "$DIR/fig7.png" --hosts 1-100000
if [ $RC -ne 0 ]; then
    bad "--plot: exit $RC: $ERR"
elif grep -q 'plot skipped' <<<"$ERR"; then
    echo "note: $ERR"
    [ ! -e "$DIR/fig7.png" ] || bad "--plot skipped but wrote a file"
else
    [ "$(head -c 8 "$DIR/fig7.png" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] || bad "--plot: not a PNG"
fi

[ $failures -eq 0 ] || { echo "$failures failure(s)"; exit 1; }
exit 0
