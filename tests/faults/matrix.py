#!/usr/bin/env python3
"""The fault matrix: every mode x phase x fault of tests/faults/cases.txt.

  matrix.py [--quick] [--only SUBSTR] [--case MODE/PHASE/FAULT]... [--backend kvm|proc] [--results FILE]

For each case: a source VMM (`migr run`, 64 MiB, a dirtying workload), a
destination (`migr recv`), a record-aware relay between them (relay.py) and
`migr send` through the relay, with short timeouts. The relay injects the
fault at the phase's record. Then the outcome is observed from outside:
which side runs the guest (its write counter moves), `migr verify` there,
every process's exit status and message, and that every process ends in a
bounded time (none left hanging). One line per case, one JSON object per
case in --results (docs/reliability.md's table is generated from it by
tests/faults/table.py). Exit 0 only if every case met its expectation.
"""
import argparse
import fnmatch
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import relay as R  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
MIGR = os.environ.get("MIGR", os.path.join(os.getcwd(), os.environ.get("BUILD", "build"), "migr"))
MEM = "64M"
RAM_PAGES = 64 * 256
TIMEOUT_MS = 1500          # --stall-timeout, --postcopy-lease, --postcopy-timeout
HOLD_S = 5.0               # stall and SIGSTOP length: past every timeout
SETTLE_S = 25.0            # bound for every process to reach its end state
SETTLE_WINDOW_MS = 10000   # migr send --settle-window: past every fault's length (HOLD_S) and the
                           # destination's --stall-timeout, well inside SETTLE_S


# ---- the case table ----------------------------------------------------------
def load_table(path):
    t = {"phases": {}, "modes": {}, "faults": [], "expect": [], "quick": [], "bugs": [], "limits": {}}
    for line in open(path):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        w = line.split()
        if w[0] == "phase":
            sel = {}
            for kv in w[4].split(","):
                if ">=" in kv:
                    k, v = kv.split(">=")
                    sel[k + ">="] = int(v)
                else:
                    k, v = kv.split("=")
                    sel[k] = int(v)
            t["phases"][w[1]] = {"dir": w[2], "type": getattr(R, w[3]), "sel": sel, "after": "after" in w[5:]}
        elif w[0] == "mode":
            t["modes"][w[1]] = {"phases": w[2].split(","), "args": w[3:]}
        elif w[0] == "faults":
            t["faults"] = w[1:]
        elif w[0] == "expect":
            t["expect"].append((w[1].split(","), w[2].split(","), w[3].split(","), w[4]))
        elif w[0] == "limit":
            t["limits"][w[1]] = (w[2].split(","), w[3].split(","))
        elif w[0] == "bug":
            t["bugs"].append((w[1].split(","), w[2].split(","), w[3].split(","), " ".join(w[4:])))
        elif w[0] == "quick":
            t["quick"].append(tuple(w[1:4]))
    return t


def known_bug(t, mode, phase, fault):
    for modes, phases, faults, text in t["bugs"]:
        if any(fnmatch.fnmatch(mode, m) for m in modes) and any(fnmatch.fnmatch(phase, p) for p in phases) \
                and any(fnmatch.fnmatch(fault, f) for f in faults):
            return text
    return None


def expected(t, mode, phase, fault):
    out = None
    for modes, phases, faults, outcome in t["expect"]:
        if any(fnmatch.fnmatch(mode, m) for m in modes) and any(fnmatch.fnmatch(phase, p) for p in phases) \
                and any(fnmatch.fnmatch(fault, f) for f in faults):
            out = outcome
    return out


# ---- the trigger: where the fault lands ---------------------------------------
class Trigger:
    def __init__(self, phase, action):
        self.p, self.action = phase, action
        self.count = {}
        self.done_seen = False
        self.have = bytearray(RAM_PAGES)
        self.missing_at_done = None
        self.pc_sent = 0

    def match(self, relay, chan, direction, rec):
        p = self.p
        if direction != p["dir"] or rec.type != p["type"] or (chan != "main" and "pc" not in p["sel"]):
            return False
        sel = p["sel"]
        n = self.count.get((direction, rec.type), 0) + 1
        if "nth" in sel and "round" not in sel and n != sel["nth"]:
            return False
        if "round" in sel or "round>=" in sel:
            rnd, _ = rec.pages()
            if "round" in sel and rnd != sel["round"]:
                return False
            if "round>=" in sel and rnd < sel["round>="]:
                return False
            if "nth" in sel:
                k = self.count.get(("round", rnd), 0) + 1
                if k != sel["nth"]:
                    return False
        if "pc" in sel:
            if not self.done_seen or not self.missing_at_done:
                return False
            _, ents = rec.pages()
            after = self.pc_sent + sum(n for _, n in ents)
            return after * 100 >= sel["pc"] * self.missing_at_done
        return True

    def observe(self, relay, chan, direction, rec):
        k = (direction, rec.type)
        self.count[k] = self.count.get(k, 0) + 1
        if rec.type == R.DONE and direction == R.TO_SRC and not self.done_seen:
            self.done_seen = True
            self.missing_at_done = max(1, RAM_PAGES - sum(self.have))
        if rec.type == R.PAGES and direction == R.TO_DST:
            rnd, ents = rec.pages()
            self.count[("round", rnd)] = self.count.get(("round", rnd), 0) + 1
            for pfn, n in ents:
                if self.done_seen:
                    self.pc_sent += n
                else:
                    for q in range(pfn, min(pfn + n, RAM_PAGES)):
                        self.have[q] = 1

    def fire(self, relay, rec):
        if self.p["after"]:
            threading.Timer(0.3, self.action, args=(relay,)).start()
            return None
        return self.action(relay)


# ---- processes ------------------------------------------------------------------
class Case:
    def __init__(self, args, table, mode, phase, fault):
        self.a, self.t, self.mode, self.phase, self.fault = args, table, mode, phase, fault
        self.dir = tempfile.mkdtemp(prefix="migr-faults-")
        self.procs = []          # every process we started (reaped at the end)
        self.notes = []
        self.cgroup = None
        self.members = 2 if mode == "group" else 1

    def path(self, name):
        return os.path.join(self.dir, name)

    def start(self, argv, name, env=None):
        out = open(self.path(name + ".out"), "w")
        err = open(self.path(name + ".log"), "w")
        p = subprocess.Popen(argv, stdout=out, stderr=err, env=env, stdin=subprocess.DEVNULL)
        p.name = name
        self.procs.append(p)
        return p

    def migr(self, *argv, timeout=20):
        try:
            r = subprocess.run([MIGR, *argv], capture_output=True, text=True, timeout=timeout)
            return r.returncode, r.stdout + r.stderr
        except subprocess.TimeoutExpired:
            return 124, "timed out"

    def status(self, ctl):
        rc, out = self.migr("status", "--ctl", ctl, timeout=5)
        if rc != 0:
            return None
        try:
            return json.loads(out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            return None

    def running(self, ctl):
        s1 = self.status(ctl)
        if not s1 or not s1.get("running"):
            return False, s1
        for _ in range(5):  # a loaded machine may hold a vCPU back for a while
            time.sleep(0.4)
            s2 = self.status(ctl)
            if not s2 or not s2.get("running"):
                return False, s2 or s1
            if s2.get("writes", 0) > s1.get("writes", 0):
                return True, s2
        return False, s2

    def read(self, name, ext):
        try:
            return open(self.path(name + ext)).read()
        except OSError:
            return ""

    # ---- faults -------------------------------------------------------------
    def action(self, relay):
        f = self.fault
        src, dst, snd = self.src[0], self.dst[0], self.send
        if f in ("kill_src", "kill_dst", "kill_send"):
            p = {"kill_src": src, "kill_dst": dst, "kill_send": snd}[f]
            try:
                os.kill(p.pid, signal.SIGKILL)
                p.wait(5)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                pass
            return None
        if f == "cut":
            relay.cut_all()
            return None
        if f == "stall":
            relay.stall_until = time.monotonic() + HOLD_S
            return None
        if f == "partition":
            relay.stall_until = float("inf")  # until the case ends
            return None
        if f == "corrupt":
            return "corrupt"
        if f in ("stop_dst", "stop_src"):
            p = dst if f == "stop_dst" else src
            os.kill(p.pid, signal.SIGSTOP)
            threading.Timer(HOLD_S, lambda: os.kill(p.pid, signal.SIGCONT) if p.poll() is None else None).start()
            return None
        if f == "oom_dst":
            self.oom(dst.pid)
            return None
        raise ValueError(f)

    def oom(self, pid):
        base = None
        for line in open("/proc/self/cgroup"):
            _, ctrl, path = line.strip().split(":", 2)
            if ctrl == "memory":
                base = "/sys/fs/cgroup/memory" + path
            elif ctrl == "" and base is None and os.path.exists("/sys/fs/cgroup/unified" + path):
                pass
        if base is None or not os.path.isdir(base):
            raise RuntimeError("no memory cgroup (v1) to limit the destination")
        cg = os.path.join(base, "migr-faults-%d" % os.getpid())
        os.makedirs(cg, exist_ok=True)
        self.cgroup = cg
        with open(os.path.join(cg, "memory.limit_in_bytes"), "w") as f:
            f.write("4096")  # one page: any new allocation of guest RAM fails
        for tid in os.listdir("/proc/%d/task" % pid):
            with open(os.path.join(cg, "tasks"), "w") as f:
                f.write(tid)

    # ---- one case -------------------------------------------------------------
    def run(self):
        t0 = time.monotonic()
        env = dict(os.environ, MIGR_RUN_DIR=self.path("run"))
        self.src, self.dst, self.relays = [], [], []
        group = ["--group", "g"] if self.mode == "group" else []
        for i in range(self.members):
            self.src.append(self.start([MIGR, "run", "--backend", self.a.backend, "--mem", MEM,
                                        "--workload", "rate=32M,pattern=random", *group,
                                        "--ctl", self.path("vm%d.ctl" % i)], "src%d" % i, env))
        for i in range(self.members):
            if not self.wait_status(self.path("vm%d.ctl" % i), self.src[i]):
                return self.result("setup-failed", t0, "source VMM did not start")
        time.sleep(0.3)  # some pages written
        margs = list(self.t["modes"][self.mode]["args"])
        tcp = "@tcp" in margs
        for i in range(self.members):
            listen = "tcp:127.0.0.1:0" if tcp else "unix:" + self.path("vm%d.real" % i)
            self.dst.append(self.start([MIGR, "recv", "--listen", listen,
                                        "--ctl", self.path("d%d.ctl" % i), "--postcopy-timeout", str(TIMEOUT_MS),
                                        "--stall-timeout", str(2 * TIMEOUT_MS),
                                        *group], "dst%d" % i, env))
        for i in range(self.members):
            if not self.wait_status(self.path("d%d.ctl" % i), self.dst[i]):
                return self.result("setup-failed", t0, "destination did not start")
            trig = Trigger(self.t["phases"][self.phase], self.action) if i == 0 else None
            if tcp:
                port = self.listening_port("dst%d" % i)
                if port is None:
                    return self.result("setup-failed", t0, "destination did not say its port")
                self.relays.append(R.Relay(("127.0.0.1", 0), ("127.0.0.1", port), trig))
            else:
                self.relays.append(R.Relay(self.path("vm%d.sock" % i), self.path("vm%d.real" % i), trig))
        args = [a for a in margs if a != "@tcp"]
        common = ["--json", "--stall-timeout", str(TIMEOUT_MS), "--settle-window", str(SETTLE_WINDOW_MS)]
        if "postcopy" in args or "hybrid" in args:
            common += ["--postcopy-lease", str(TIMEOUT_MS)]
        if self.mode == "group":
            argv = [MIGR, "send", "--group", "g", "--to", "unix:" + self.path("{vm}.sock"), *args, *common]
        else:
            argv = [MIGR, "send", "--ctl", self.path("vm0.ctl"), "--to", self.relays[0].url,
                    *args, *common]
        self.send = self.start(argv, "send", env)
        return self.observe(t0)

    def listening_port(self, name, secs=10):
        """The port a `migr recv --listen tcp:...:0` printed ("listening on tcp:HOST:PORT")."""
        end = time.monotonic() + secs
        while time.monotonic() < end:
            for line in self.read(name, ".log").splitlines():
                if "listening on tcp:" in line:
                    return int(line.rsplit(":", 1)[1].split()[0])
            time.sleep(0.05)
        return None

    def wait_status(self, ctl, p, secs=20):
        end = time.monotonic() + secs
        while time.monotonic() < end:
            if p.poll() is not None:
                return False
            if self.status(ctl):
                return True
            time.sleep(0.05)
        return False

    def wait(self, p, secs):
        try:
            return p.wait(secs)
        except subprocess.TimeoutExpired:
            return None

    def observe(self, t0):
        # 1. migr send ends (or was killed) within the bound
        rc_send = self.wait(self.send, SETTLE_S)
        if rc_send is None:
            return self.result("hang", t0, "migr send still running after %ds" % SETTLE_S)
        fired = self.relays[0].trigger.p and self.relays[0].fired
        if self.relays[0].fired is None:
            if "pc" in self.t["phases"][self.phase]["sel"] and rc_send == 0:
                # hybrid: nothing (or too little) was missing at DONE for that point of post-copy to exist
                return self.result("n/a", t0, "no post-copy point %d%% in this run: the destination lacked "
                                   "(almost) nothing at DONE" % self.t["phases"][self.phase]["sel"]["pc"])
            return self.result("phase-not-reached", t0, "the phase's record never came (send exit %d)" % rc_send)
        if self.t["phases"][self.phase]["after"] or self.fault.startswith("stop") or self.fault == "stall":
            time.sleep(HOLD_S + 0.5)  # the fault's own length
        # 2. each destination either runs a guest or exits, within the bound
        end = time.monotonic() + SETTLE_S
        sides = []
        for i in range(self.members):
            d = self.dst[i]
            while time.monotonic() < end and d.poll() is None:
                s = self.status(self.path("d%d.ctl" % i))
                if s and s.get("running") is True and s.get("incoming") is not False and "writes" in s:
                    break
                if s and s.get("running") is False and "writes" in s:
                    break  # a guest here, paused
                if s and s.get("phase") in ("waiting", "settling") and self.relays[0].fired is not None and \
                        self.send.poll() is not None and time.monotonic() > end - SETTLE_S + 1:
                    break  # dropped the broken connection, listens again: nothing runs here
                time.sleep(0.1)
            if d.poll() is None and time.monotonic() >= end:
                return self.result("hang", t0, "destination %d neither runs a guest nor exits" % i)
            src_run, ss = self.running(self.path("vm%d.ctl" % i)) if self.src[i].poll() is None else (False, None)
            dst_run, ds = self.running(self.path("d%d.ctl" % i)) if d.poll() is None else (False, None)
            side = {"src_run": src_run, "dst_run": dst_run,
                    "src_alive": self.src[i].poll() is None, "dst_alive": d.poll() is None,
                    "src_paused": bool(ss and ss.get("running") is False and "writes" in ss),
                    "dst_paused": bool(ds and ds.get("running") is False and "writes" in ds),
                    "src_rc": self.src[i].poll(), "dst_rc": d.poll(),
                    "src_ownership": (ss or {}).get("ownership", "")}
            sides.append(side)
        return self.judge(t0, rc_send, sides)

    def judge(self, t0, rc_send, sides):
        outcomes = []
        why = []
        for i, s in enumerate(sides):
            if s["src_run"] and s["dst_run"]:
                outcomes.append("BOTH")
                why.append("vm%d runs on both sides" % i)
                continue
            if s["src_run"] or s["dst_run"]:
                side = "src" if s["src_run"] else "dst"
                ctl = self.path(("vm%d.ctl" if side == "src" else "d%d.ctl") % i)
                rc, out = self.migr("verify", "--ctl", ctl, timeout=30)
                if rc != 0:
                    outcomes.append("CORRUPT")
                    why.append("vm%d on %s does not verify: %s" % (i, side, out.strip()[-200:]))
                    continue
                other_alive = s["dst_alive"] if side == "src" else s["src_alive"]
                other_paused = s["dst_paused"] if side == "src" else s["src_paused"]
                if other_alive and other_paused and side == "dst":
                    why.append("vm%d: the source VMM still holds a paused copy" % i)
                outcomes.append(side)
                continue
            if s["src_paused"] and not s["dst_run"] and self.mode == "handover" and not s["dst_alive"] and \
                    "guest running here" in self.read("dst%d" % i, ".log"):
                # hand-over: the destination ran the guest on the shared memory
                # and died; the source's paused copy is stale (it must not be
                # resumed, and it was not): the guest is lost
                outcomes.append("lost")
                continue
            if s["src_paused"] and not s["dst_run"]:
                # kept paused on the source: the operator's resume must work
                rc, out = self.migr("resume", "--ctl", self.path("vm%d.ctl" % i))
                r2, _ = self.running(self.path("vm%d.ctl" % i))
                rv, vout = self.migr("verify", "--ctl", self.path("vm%d.ctl" % i), timeout=30)
                outcomes.append("doubt" if rc == 0 and r2 and rv == 0 else "STUCK")
                if outcomes[-1] == "doubt" and self.mode not in ("cpostcopy", "chybrid") and \
                        "ownership in doubt" not in s["src_ownership"]:
                    # settle.h: a source left in doubt says so in `migr status`, and why
                    outcomes[-1] = "doubt-unsaid"
                    why.append("vm%d paused in doubt, but migr status does not say so" % i)
                if outcomes[-1] == "STUCK":
                    why.append("vm%d paused on the source; resume rc %d, running %s, verify %d" % (i, rc, r2, rv))
                continue
            if s["dst_paused"] and not s["src_run"]:
                rc, out = self.migr("resume", "--ctl", self.path("d%d.ctl" % i))
                r2, _ = self.running(self.path("d%d.ctl" % i))
                rv, vout = self.migr("verify", "--ctl", self.path("d%d.ctl" % i), timeout=30)
                outcomes.append("doubt-dst" if rc == 0 and r2 and rv == 0 else "STUCK")
                continue
            outcomes.append("lost")
        observed = outcomes[0] if len(set(outcomes)) == 1 else "/".join(outcomes)
        if "src" in outcomes and "dst" in outcomes:
            # a group split across the two sides: some members moved, others did not
            observed = "SPLIT:" + observed
            why.append("the group is split: members run on both sides")
        return self.result(observed, t0, "; ".join(why), rc_send=rc_send, sides=sides)

    def result(self, observed, t0, why, rc_send=None, sides=None):
        exp = expected(self.t, self.mode, self.phase, self.fault)
        ok = observed in (exp or "").split("|") or (exp == "any" and observed in ("src", "dst", "doubt", "doubt-dst")) \
            or observed == "n/a"
        msgs = self.messages()
        # messages: a failed migration names where the guest is
        # (lost with exit 0: the destination took the guest over and died after DONE)
        if ok and observed in ("src", "doubt") and rc_send == 0 and not self.after() \
                and self.fault != "kill_send":
            ok, why = False, why + " migr send exited 0 although the guest did not move"
        killed_client = self.fault in ("kill_send", "kill_src", "stop_src")  # migr send's own peer went away
        if ok and rc_send not in (None, 0, 1, -9):
            ok, why = False, why + " migr send exited %d (expected 0 or 1)" % rc_send
        if ok and observed == "dst" and rc_send != 0 and not killed_client and not self.after():
            ok, why = False, why + " migr send exited %d although the guest moved" % rc_send
        for side in sides or []:
            if ok and side["dst_rc"] == 0 and not side["dst_run"] and not side["dst_paused"]:
                ok, why = False, why + " a destination exited 0 without running the guest"
            if ok and side["dst_rc"] not in (None, 0, 1, -9, -15):
                ok, why = False, why + " a destination exited %d (expected 1, or killed)" % side["dst_rc"]
        # (lost after migr send said the guest moved: the destination died as its owner)
        if ok and observed == "lost" and not self.after() and rc_send != 0:
            if "lost" not in self.read("dst0", ".log").lower():  # any line: a settle answer may follow
                ok, why = False, why + " the destination does not say the guest is lost"
            if "lost" not in msgs["send"].lower():
                ok, why = False, why + " migr send does not say the guest is lost"
        hung = self.reap()
        bug = known_bug(self.t, self.mode, self.phase, self.fault) if not ok else None
        if hung:
            ok, bug, why = False, None, why + " left hanging: " + ",".join(hung)
        return {"mode": self.mode, "phase": self.phase, "fault": self.fault, "expected": exp,
                "observed": observed, "ok": ok or bug is not None, "known_bug": bug, "why": why.strip(), "send_rc": rc_send,
                "send_msg": msgs["send"], "dst_msg": msgs["dst"], "secs": round(time.monotonic() - t0, 1),
                "fired": self.relays[0].fired[2] if self.relays and self.relays[0].fired else None,
                "sides": sides, "dir": self.dir if self.a.keep else None}

    def after(self):
        """The fault comes after the migration ended: its outcome is not the migration's."""
        return self.t["phases"][self.phase]["after"]

    def messages(self):
        def last_line(text, pat=None):
            lines = [ln for ln in text.splitlines() if ln.strip()]
            if pat:
                lines = [ln for ln in lines if pat in ln] or lines
            return lines[-1][:300] if lines else ""
        snd = self.read("send", ".out") + self.read("send", ".log")
        err = ""
        try:
            j = json.loads([ln for ln in self.read("send", ".out").splitlines() if ln.startswith("{")][-1])
            err = j.get("error", "")
        except (IndexError, ValueError):
            err = last_line(self.read("send", ".log"))
        return {"send": err or last_line(snd), "dst": last_line(self.read("dst0", ".log"), "migr recv")}

    def reap(self):
        """Stop what still runs (migr stop, then SIGTERM); a process that does not end is hanging."""
        for r in getattr(self, "relays", []):
            r.close()
        hung = []
        for p in self.procs:
            if p.poll() is None:
                try:
                    os.kill(p.pid, signal.SIGCONT)
                except OSError:
                    pass
        for i in range(len(getattr(self, "src", []))):
            for ctl, p in (("vm%d.ctl" % i, self.src[i]), ("d%d.ctl" % i, self.dst[i] if i < len(self.dst) else None)):
                if p is None or p.poll() is not None:
                    continue
                s = self.status(self.path(ctl))
                if s and s.get("phase") in ("waiting", "settling"):
                    p.terminate()  # a receiver still listening: `migr stop` waits for a guest there
                elif s:
                    self.migr("stop", "--ctl", self.path(ctl), timeout=5)
        for p in self.procs:
            if self.wait(p, 10) is None:
                hung.append(p.name)
                p.terminate()
                if self.wait(p, 5) is None:
                    p.kill()
                    p.wait()
        if self.cgroup:
            for _ in range(50):
                try:
                    os.rmdir(self.cgroup)
                    break
                except OSError:
                    time.sleep(0.1)
        if not self.a.keep:
            shutil.rmtree(self.dir, ignore_errors=True)
        return hung


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", default="")
    ap.add_argument("--case", action="append", default=[], help="MODE/PHASE/FAULT exactly (repeatable)")
    ap.add_argument("--backend", default="kvm" if os.access("/dev/kvm", os.R_OK | os.W_OK) else "proc")
    ap.add_argument("--results", default="")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--merge", default="", help="results file whose cases this run's results replace")
    ap.add_argument("--failed-in", default="", help="run only the cases that failed in this results file")
    a = ap.parse_args()
    t = load_table(os.path.join(HERE, "cases.txt"))
    cases = []
    for mode, m in t["modes"].items():
        for phase in m["phases"]:
            for fault in t["faults"]:
                lim = t["limits"].get(fault)
                if lim and not (mode in lim[0] and phase in lim[1]):
                    continue
                cases.append((mode, phase, fault))
    if a.failed_in:
        bad = {(r["mode"], r["phase"], r["fault"]) for r in map(json.loads, open(a.failed_in)) if not r["ok"]}
        cases = [c for c in cases if c in bad]
    if a.quick:
        cases = [c for c in cases if c in t["quick"]]
    if a.only:
        cases = [c for c in cases if all(w in " ".join(c) for w in a.only.split())]
    if a.case:
        want = [tuple(c.split("/")) for c in a.case]
        cases = [c for c in cases if c in want]
    res_f = open(a.results, "w") if a.results else None
    npass = nfail = 0
    print("backend %s, %d cases" % (a.backend, len(cases)), flush=True)
    for mode, phase, fault in cases:
        r = Case(a, t, mode, phase, fault).run()
        r["backend"] = a.backend
        npass += r["ok"]
        nfail += not r["ok"]
        if r["known_bug"]:
            print("SKIP: known bug %s (%s %s %s: %s)" % (r["known_bug"], mode, phase, fault, r["why"]))
        print("%-4s %-9s %-8s %-9s expected %-5s got %-5s %5.1fs  %s" % (
            ("bug" if r["known_bug"] else "ok") if r["ok"] else "FAIL", mode, phase, fault, r["expected"], r["observed"], r["secs"],
            (r["why"] or r["send_msg"])[:150]), flush=True)
        if res_f:
            res_f.write(json.dumps(r) + "\n")
            res_f.flush()
    if a.merge and a.results:
        new = {(r["mode"], r["phase"], r["fault"]): r for r in map(json.loads, open(a.results))}
        old = [json.loads(ln) for ln in open(a.merge)]
        with open(a.merge, "w") as f:
            for r in old:
                f.write(json.dumps(new.get((r["mode"], r["phase"], r["fault"]), r)) + "\n")
    print("%d passed, %d failed" % (npass, nfail))
    return 0 if nfail == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
