#!/bin/bash
# data=app end to end (docs/workload-data.md): the PVH guest boots on migr's
# VMM with an application image as its module (--append initrd=FILE), starts
# from the image's first capture, writes its changed pages, verifies; a live
# migration over unix verifies on the destination and the guest goes on
# writing there; without a module or with ws= the guest says why and stops;
# under QEMU (-initrd, if installed) the dumped RAM verifies too.
# The image is synthetic (bench/netns/appimage.py's writer, pages of zeros,
# text and noise), so the test needs no redis. Exit 0 pass, 1 fail, 77 skip.
set -u
. "$(dirname "$0")/itlib.sh"
need_kvm
it_setup workload-app
ELF=${BUILD:-build}/bench/peers/pvh.elf
[ -f "$ELF" ] || fail "$ELF is missing (make all builds it)"
IMG=$DIR/app.img
python3 - "$IMG" <<'EOF' || fail "could not write the image"
import os, random, sys
sys.path.insert(0, "bench/netns")
import appimage
rng = random.Random(5)
a, b = {}, {}
for i in range(600):
    addr = 0x7f0000000000 + i * 4096
    kind = i % 3
    page = bytes(4096) if kind == 0 else (b"key:%06d value=%s " % (i, b"x" * 40) * 100)[:4096] if kind == 1 \
        else rng.randbytes(4096)
    a[addr] = page
    b[addr] = page if i % 4 else page[:100] + rng.randbytes(60) + page[160:]
img, st = appimage.build(a, b, 1 << 20)
assert st["pages"] == 600 and st["changed"] == 150, st
open(sys.argv[1], "wb").write(img)
EOF

# refusals by the guest: no module, ws= with data=app
"$MIGR" run --mem 64M --kernel "$ELF" --workload rate=1M,data=app --ctl "$DIR/n.ctl" 2>"$DIR/n.log" &
PIDS+=($!)
for _ in $(seq 100); do grep -q "no module" "$DIR/n.log" && break; sleep 0.1; done
grep -q "data=app: no module" "$DIR/n.log" || fail "data=app without a module: $(tail -n2 "$DIR/n.log")"
M stop --ctl "$DIR/n.ctl" >/dev/null 2>&1
"$MIGR" run --mem 64M --kernel "$ELF" --workload rate=1M,ws=1M,data=app --append "initrd=$IMG" \
    --ctl "$DIR/w.ctl" 2>"$DIR/w.log" &
PIDS+=($!)
for _ in $(seq 100); do grep -q "drop ws=" "$DIR/w.log" && break; sleep 0.1; done
grep -q "drop ws=" "$DIR/w.log" || fail "data=app with ws= not refused: $(tail -n2 "$DIR/w.log")"
M stop --ctl "$DIR/w.ctl" >/dev/null 2>&1

# a running guest with the image, then a live migration
"$MIGR" run --mem 64M --kernel "$ELF" --workload rate=2M,data=app,seed=4 --append "initrd=$IMG" \
    --ctl "$DIR/s.ctl" 2>"$DIR/s.log" &
src=$!
PIDS+=("$src")
wait_vmm "$src" "$DIR/s.ctl" 10 || fail "migr run --kernel did not come up: $(tail -n2 "$DIR/s.log")"
for _ in $(seq 100); do [ "$(writes_of "$DIR/s.ctl")" -gt 50 ] 2>/dev/null && break; sleep 0.1; done
grep -q "migr-pvh: 64 MiB, 600 pages" "$DIR/s.log" || fail "no boot line with the image's 600 pages"
out=$(M verify --ctl "$DIR/s.ctl") || fail "verify on the source: $out"
[[ "$out" == "verified: 600 pages intact"* ]] || fail "verify on the source: $out"

"$MIGR" recv --listen "unix:$DIR/m.sock" --ctl "$DIR/d.ctl" --timeout 60 2>"$DIR/d.log" &
PIDS+=($!)
for _ in $(seq 200); do grep -q "listening on" "$DIR/d.log" && break; sleep 0.05; done
M send --ctl "$DIR/s.ctl" --to "unix:$DIR/m.sock" --json >"$DIR/send.out" 2>"$DIR/send.err" ||
    fail "migr send: $(tail -n2 "$DIR/send.err")"
js=$(tail -n1 "$DIR/send.out")
[ "$(json_get "$js" verified)" = true ] || fail "the destination did not confirm every page: $js"
w0=$(writes_of "$DIR/d.ctl")
sleep 0.5
w1=$(writes_of "$DIR/d.ctl")
num_ok "$w1 > $w0" || fail "the guest does not write on the destination ($w0 -> $w1)"
out=$(M verify --ctl "$DIR/d.ctl") || fail "verify on the destination: $out"
[[ "$out" == "verified: 600 pages intact"* ]] || fail "verify on the destination: $out"
M stop --ctl "$DIR/d.ctl" >/dev/null

# QEMU: the same image as -initrd; its dumped RAM verifies
if command -v qemu-system-x86_64 >/dev/null; then
    python3 - "$ELF" "$IMG" "$DIR" "$MIGR" <<'EOF' || fail "QEMU with -initrd: see above"
import sys, time
sys.path.insert(0, "bench/peers")
import qmp
elf, img, d, migr = sys.argv[1:]
argv = qmp.qemu_argv(elf, 64, "rate=2M,data=app,seed=4", f"{d}/q.sock") + ["-initrd", img]
with qmp.Proc(argv, f"{d}/q.log") as p:
    q = qmp.QMP(f"{d}/q.sock")
    try:
        qmp.wait_guest_ready(q, 60)
        time.sleep(0.5)
        ok, js = qmp.pmemsave_verify(q, 64 << 20, f"{d}/ram.img", migr)
    finally:
        q.close()
if not ok or js.get("pages_checked") != 600:
    sys.exit(f"QEMU's RAM did not verify: {js}")
EOF
fi
exit 0
