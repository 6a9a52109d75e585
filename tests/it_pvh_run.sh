#!/bin/bash
# migr run --kernel: the PVH guest (build/bench/peers/pvh.elf) boots on migr's
# VMM from its ELF note, reads its workload from the command line, keeps
# about the asked rate, advances its write counter and verifies; the CLI
# refuses what --kernel cannot do (several vCPUs, the proc backend, --append
# alone, a file that is not a PVH ELF). Exit 0 pass, 1 fail, 77 skip.
set -u
. "$(dirname "$0")/itlib.sh"
need_kvm
it_setup pvh-run
ELF=${BUILD:-build}/bench/peers/pvh.elf
[ -f "$ELF" ] || fail "$ELF is missing (make all builds it)"

# refusals: exit status 2 (bad arguments) or 1 (bad kernel), with the reason
M run --mem 64M --vcpus 2 --kernel "$ELF" --ctl "$DIR/x.ctl" >"$DIR/v.out" 2>&1
[ $? -eq 2 ] && grep -q "one vCPU" "$DIR/v.out" || fail "--vcpus 2 --kernel not refused: $(head -n1 "$DIR/v.out")"
M run --mem 64M --backend proc --kernel "$ELF" --ctl "$DIR/x.ctl" >"$DIR/p.out" 2>&1
[ $? -eq 2 ] && grep -q "backend kvm" "$DIR/p.out" || fail "--backend proc --kernel not refused"
M run --mem 64M --append "rate=1M" --ctl "$DIR/x.ctl" >"$DIR/a.out" 2>&1
[ $? -eq 2 ] && grep -q "needs --kernel" "$DIR/a.out" || fail "--append without --kernel not refused"
M run --mem 64M --kernel /bin/true --ctl "$DIR/x.ctl" >"$DIR/t.out" 2>&1
[ $? -eq 1 ] && grep -q "/bin/true: ELF type 3 is not an executable" "$DIR/t.out" ||
    fail "a non-PVH ELF was not refused clearly: $(head -n1 "$DIR/t.out")"
printf 'hello' >"$DIR/bad.elf"
M run --mem 64M --kernel "$DIR/bad.elf" --ctl "$DIR/x.ctl" >"$DIR/b.out" 2>&1
[ $? -eq 1 ] && grep -q "not an ELF file" "$DIR/b.out" || fail "a non-ELF was not refused"

# a running PVH guest: 4 MiB/s = 1024 pages/s over an 8 MiB working set
"$MIGR" run --mem 64M --kernel "$ELF" --workload rate=4M,ws=8M,data=text,seed=3 --append "pattern=sequential" \
    --ctl "$DIR/g.ctl" 2>"$DIR/g.log" &
PIDS+=($!)
wait_vmm "${PIDS[0]}" "$DIR/g.ctl" 10 || fail "migr run --kernel did not come up"
w0=0
for _ in $(seq 100); do
    w0=$(writes_of "$DIR/g.ctl")
    [ "${w0:-0}" -gt 0 ] && break
    sleep 0.1
done
[ "${w0:-0}" -gt 0 ] || fail "the PVH guest wrote nothing in 10 s"
grep -q "migr-pvh: 64 MiB, 2048 pages, tsc [0-9]* kHz" "$DIR/g.log" || fail "no boot line from the guest"
t0=$(date +%s%N)
sleep 1
w1=$(writes_of "$DIR/g.ctl")
t1=$(date +%s%N)
rate=$(awk -v a="$w0" -v b="$w1" -v t="$((t1 - t0))" 'BEGIN { printf "%.0f", (b - a) * 1e9 / t }')
num_ok "$rate > 600 && $rate < 1400" || fail "the guest writes $rate pages/s, asked for 1024"
out=$(M verify --ctl "$DIR/g.ctl") || fail "verify: $out"
[[ "$out" == "verified: 2048 pages intact"* ]] || fail "verify: $out"
M status --ctl "$DIR/g.ctl" | grep -q '"failed":false' || fail "guest failed: $(M status --ctl "$DIR/g.ctl")"
M stop --ctl "$DIR/g.ctl" >/dev/null || fail "stop"
wait_exit "${PIDS[0]}" 10 || fail "migr run did not exit after stop"
exit 0
