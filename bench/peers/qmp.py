"""A minimal QMP client (stdlib only) and QEMU process helpers for
bench/peers/qemu.py and tests/it_pvh_qemu.sh.

QMP: one JSON object per line over a unix socket; after the greeting,
qmp_capabilities; replies are {"return": ...} or {"error": ...}; events
({"event": NAME, "timestamp": {"seconds", "microseconds"}}) may arrive at any
time and are kept in .events with the host time they carry.
"""
import json
import os
import signal
import socket
import subprocess
import time


class QMPError(Exception):
    pass


class QMP:
    def __init__(self, path, timeout=20.0):
        deadline = time.time() + timeout
        while True:
            try:
                self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.s.connect(path)
                break
            except OSError as e:
                self.s.close()
                if time.time() > deadline:
                    raise QMPError(f"QMP {path}: connect: {e}")
                time.sleep(0.05)
        self.s.settimeout(60)
        self.buf = b""
        self.events = []
        greeting = self._read()
        if "QMP" not in greeting:
            raise QMPError(f"QMP {path}: no greeting: {greeting}")
        self.cmd("qmp_capabilities")

    def _read(self):
        while b"\n" not in self.buf:
            d = self.s.recv(65536)
            if not d:
                raise QMPError("QMP: connection closed by QEMU")
            self.buf += d
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def cmd(self, name, **args):
        msg = {"execute": name}
        if args:
            msg["arguments"] = args
        self.s.sendall(json.dumps(msg).encode() + b"\n")
        while True:
            r = self._read()
            if "event" in r:
                ts = r.get("timestamp", {})
                r["t"] = ts.get("seconds", 0) + ts.get("microseconds", 0) / 1e6
                self.events.append(r)
                continue
            if "error" in r:
                raise QMPError(f"{name}: {r['error'].get('desc', r['error'])}")
            return r.get("return")

    def poll_events(self):
        """Read events that arrived without a command (non-blocking)."""
        self.s.settimeout(0.0)
        try:
            while True:
                try:
                    r = self._read()
                except (BlockingIOError, socket.timeout):
                    break
                if "event" in r:
                    ts = r.get("timestamp", {})
                    r["t"] = ts.get("seconds", 0) + ts.get("microseconds", 0) / 1e6
                    self.events.append(r)
        finally:
            self.s.settimeout(60)

    def event_time(self, name, **match):
        for e in self.events:
            if e["event"] == name and all(e.get("data", {}).get(k) == v for k, v in match.items()):
                return e["t"]
        return None

    def hmp(self, line):
        return self.cmd("human-monitor-command", **{"command-line": line})

    def read_u64(self, gpa, n=1):
        out = self.hmp(f"xp /{n}gx {gpa:#x}")
        vals = []
        for ln in out.splitlines():
            if ":" in ln:
                vals += [int(x, 16) for x in ln.split(":", 1)[1].split()]
        return vals[:n]

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


WL_BOOT_GPA, WL_VCPU_GPA, WL_BOOT_MAGIC = 0x1000, 0x2000, 0x544f4f4252474d4d


def qemu_argv(elf, mem_mib, cmdline, qmp_path, incoming=False):
    argv = ["qemu-system-x86_64", "-accel", "kvm", "-M", "microvm", "-cpu", "host,-arch-capabilities",
            "-m", f"{mem_mib}M", "-smp", "1", "-nodefaults", "-no-user-config", "-nographic",
            "-serial", "none", "-monitor", "none", "-no-reboot", "-name", "pvh,debug-threads=on",
            "-kernel", elf, "-append", cmdline, "-qmp", f"unix:{qmp_path},server=on,wait=off"]
    if incoming:
        argv += ["-incoming", "defer"]
    return argv


class Proc:
    """A child process that is always killed and reaped (use with `with`)."""

    def __init__(self, argv, log):
        self.log = open(log, "wb")
        self.p = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.pid = self.p.pid

    def alive(self):
        return self.p.poll() is None

    def stop(self, grace=3.0):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(grace)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.log.close()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.stop()


def wait_guest_ready(q, timeout):
    """Until the PVH guest wrote its boot page and its first page; returns writes."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        magic = q.read_u64(WL_BOOT_GPA)[0]
        if magic == WL_BOOT_MAGIC:
            w = q.read_u64(WL_VCPU_GPA)[0]
            if w > 0:
                return w
        time.sleep(0.1)
    raise QMPError(f"the PVH guest did not start within {timeout:.0f} s (no workload boot page)")


def guest_writes(q):
    return q.read_u64(WL_VCPU_GPA)[0]


def pmemsave_verify(q, mem_bytes, image, migr):
    """Stop the guest, dump its RAM, run `migr verify --image`; returns (ok, text)."""
    q.cmd("stop")
    q.cmd("pmemsave", val=0, size=mem_bytes, filename=image)
    r = subprocess.run([migr, "verify", "--image", image, "--json"], capture_output=True, text=True, timeout=300)
    try:
        os.unlink(image)
    except OSError:
        pass
    line = (r.stdout.strip().splitlines() or [""])[-1]
    try:
        js = json.loads(line)
    except ValueError:
        js = {"ok": False, "error": (r.stderr or line).strip()}
    return r.returncode == 0 and js.get("ok") is True, js


def _ticks(stat):
    fields = stat[stat.rindex(")") + 2:].split()
    return int(fields[11]) + int(fields[12])


def proc_rss_kb(pid):
    """Resident memory of process pid in KiB (VmRSS: private and shared,
    so a source that allocates guest pages by reading them shows too), or 0."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for ln in f:
                if ln.startswith("VmRSS:"):
                    return int(ln.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def proc_cpu_ms(pid, exclude_comm_prefixes=()):
    """CPU (utime+stime) of process pid in ms, without its live threads whose
    name starts with one of the prefixes (the vCPU threads). The process
    total includes threads that already exited (QEMU's migration thread)."""
    hz = os.sysconf("SC_CLK_TCK")
    try:
        with open(f"/proc/{pid}/stat") as f:
            total = _ticks(f.read())
        tids = os.listdir(f"/proc/{pid}/task")
    except (OSError, ValueError):
        return 0.0
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                st = f.read()
        except OSError:
            continue
        comm = st[st.index("(") + 1:st.rindex(")")]
        if any(comm.startswith(p) for p in exclude_comm_prefixes):
            total -= _ticks(st)
    return total * 1000.0 / hz
