#!/bin/bash
# The same PVH guest under QEMU (-M microvm -kernel): it boots, writes its
# workload boot page and pages at the asked rate (24k pages/s, TSC rate from
# kvmclock), and after `stop` + QMP pmemsave of its RAM, `migr verify --image`
# passes; a flipped byte in the image fails it. SKIP without
# qemu-system-x86_64 (scripts/install-deps.sh --qemu) or /dev/kvm.
set -u
. "$(dirname "$0")/itlib.sh"
need_kvm
command -v qemu-system-x86_64 >/dev/null || { echo "SKIP: qemu-system-x86_64 is not installed (scripts/install-deps.sh --qemu)"; exit 77; }
command -v python3 >/dev/null || { echo "SKIP: python3 is missing"; exit 77; }
it_setup pvh-qemu
ELF=${BUILD:-build}/bench/peers/pvh.elf
[ -f "$ELF" ] || fail "$ELF is missing (make all builds it)"
# qmp.Proc kills and reaps QEMU on every path out of the script (with/finally).
timeout -k 5 60 python3 - "$ELF" "$DIR" "$MIGR" <<'PY' || fail "QEMU boot + pmemsave + verify --image failed"
import os, signal, subprocess, sys, time
def on_term(sig, frame):
    raise SystemExit(1)                # unwinds `with qmp.Proc`: QEMU is killed and reaped
signal.signal(signal.SIGTERM, on_term)
sys.path.insert(0, os.path.join(os.getcwd(), "bench/peers"))
import qmp
elf, d, migr = sys.argv[1:4]
mem = 128
with qmp.Proc(qmp.qemu_argv(elf, mem, "rate=96M,ws=16M,data=text,seed=9", d + "/q.sock"), d + "/qemu.log") as p:
    q = qmp.QMP(d + "/q.sock")
    w0 = qmp.wait_guest_ready(q, 30)
    t0 = time.time()
    time.sleep(1)
    w1 = qmp.guest_writes(q)
    rate = (w1 - w0) / (time.time() - t0)
    print(f"QEMU: {rate:.0f} pages/s (asked 24576)")
    if not 12000 < rate < 36000:
        sys.exit(f"rate {rate:.0f} pages/s is off")
    q.cmd("stop")
    img = d + "/ram.img"
    q.cmd("pmemsave", val=0, size=mem << 20, filename=img)
    q.close()
r = subprocess.run([migr, "verify", "--image", img], capture_output=True, text=True)
print(r.stdout.strip(), r.stderr.strip())
if r.returncode != 0 or not r.stdout.startswith("verified: 4096 pages intact"):
    sys.exit("verify --image failed")
with open(img, "r+b") as f:             # one flipped byte in the working set
    ws = 0x200000 + (((mem << 20) // 4096 * 4 + 0x1fffff) & ~0x1fffff)
    f.seek(ws + 5 * 4096 + 100)
    b = f.read(1)
    f.seek(ws + 5 * 4096 + 100)
    f.write(bytes([b[0] ^ 0x40]))
r = subprocess.run([migr, "verify", "--image", img], capture_output=True, text=True)
if r.returncode != 1 or "NOT verified: 1 of 4096 pages bad; page 5" not in r.stdout:
    sys.exit("a corrupted image was not caught: " + r.stdout + r.stderr)
PY
exit 0
