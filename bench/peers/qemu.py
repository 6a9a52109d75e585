#!/usr/bin/env python3
"""bench/peers/qemu: QEMU and migr migrating the same PVH guest
(build/bench/peers/pvh.elf), interleaved A B A B, on the same machine in the
same run, with the machine's limits measured alongside.

    python3 bench/peers/qemu.py [--quick] [--pairs N] [--only TEXT] [--build DIR] [--out DIR]

Per run: total, downtime (source stop -> destination running: QMP STOP and
RESUME event times for QEMU; for migr the source's `paused_at_s` to the
destination's `resumed_at_s`, the same host wall clock; migr's own
`downtime_ms`, until DONE is back on the source, is kept as
`migr_paused_ms`), time until every
page is resident (post-copy), wire bytes, CPU of each side without its vCPU
thread (/proc/PID/task/*/stat), the source's largest RSS growth (VmRSS
sampled every 20 ms; the table prints the largest of the runs), and whether the destination's RAM verified
(QEMU: stop + pmemsave + `migr verify --image`; migr: `migr verify --ctl`).
Output: a table on stdout, bench/results/peers_qemu.json and .png.
Every QEMU and migr process is killed and reaped, whatever happens.
"""
import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qmp  # noqa: E402

# name, guest MiB, workload spec, kind ("pre" or "post")
SCENARIOS = [
    ("idle1G", 1024, "rate=4K,data=text", "pre"),
    ("1G-ws64M-24k", 1024, "rate=96M,ws=64M,data=text", "pre"),
    ("1G-ws256M-24k", 1024, "rate=96M,ws=256M,data=text", "pre"),
    ("2G-ws1G-max", 2048, "rate=0,ws=1G,data=text", "pre"),
    ("bulk2G-1Grandom", 2048, "rate=4K,ws=1G,data=random", "pre"),
    ("post1G-ws256M", 1024, "rate=96M,ws=256M,data=text", "post"),
]
QUICK = ["1G-ws64M-24k", "post1G-ws256M"]
TIMEOUT = 180


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Run:
    def __init__(self, tmp, migr, elf, scen, transport, variant):
        self.tmp, self.migr, self.elf = tmp, migr, elf
        self.name, self.mem, self.spec, self.kind = scen
        self.transport, self.variant = transport, variant
        self.r = {"scenario": self.name, "transport": transport, "variant": variant, "ok": False}

    def qemu_url(self, tag):
        if self.transport == "unix":
            return f"unix:{self.tmp}/{tag}.mig"
        return f"tcp:127.0.0.1:{free_port()}"

    # ---- QEMU ----
    def qemu(self):
        post = self.variant == "qemu-postcopy"
        best = self.variant == "qemu-best"
        caps = [{"capability": "events", "state": True}]
        if post:
            caps.append({"capability": "postcopy-ram", "state": True})
        if best:
            caps += [{"capability": "multifd", "state": True}, {"capability": "xbzrle", "state": True}]
        url = self.qemu_url("q")
        cmdline = self.spec
        with qmp.Proc(qmp.qemu_argv(self.elf, self.mem, cmdline, f"{self.tmp}/qs.sock"), f"{self.tmp}/qs.log") as src, \
                qmp.Proc(qmp.qemu_argv(self.elf, self.mem, cmdline, f"{self.tmp}/qd.sock", incoming=True),
                         f"{self.tmp}/qd.log") as dst:
            qs, qd = qmp.QMP(f"{self.tmp}/qs.sock"), qmp.QMP(f"{self.tmp}/qd.sock")
            try:
                params = {"max-bandwidth": 1 << 40}   # QEMU's default throttle (128 MiB/s) lifted, as libvirt does
                if best:
                    params.update({"multifd-channels": 4, "xbzrle-cache-size": 64 << 20})
                for q in (qs, qd):
                    q.cmd("migrate-set-capabilities", capabilities=caps)
                    q.cmd("migrate-set-parameters", **params)
                qd.cmd("migrate-incoming", uri=url)
                qmp.wait_guest_ready(qs, 120)
                time.sleep(1.0)
                c0s = qmp.proc_cpu_ms(src.pid, ("CPU ",))
                c0d = qmp.proc_cpu_ms(dst.pid, ("CPU ",))
                rss0 = rss_max = qmp.proc_rss_kb(src.pid)
                t0 = time.time()
                qs.cmd("migrate", uri=url)
                if post:
                    time.sleep(0.2)
                    qs.cmd("migrate-start-postcopy")
                st = {}
                while time.time() - t0 < TIMEOUT:
                    st = qs.cmd("query-migrate")
                    rss_max = max(rss_max, qmp.proc_rss_kb(src.pid))
                    if st.get("status") in ("completed", "failed", "cancelled"):
                        break
                    time.sleep(0.02)
                if st.get("status") != "completed":
                    raise RuntimeError(f"QEMU migration {st.get('status')}: {st.get('error-desc', '')}")
                t_done_src = time.time()
                dst_done = None
                while time.time() - t0 < TIMEOUT:
                    d = qd.cmd("query-migrate")
                    qd.poll_events()
                    if d.get("status") == "completed" and qd.cmd("query-status").get("running"):
                        dst_done = qd.event_time("MIGRATION", status="completed") or time.time()
                        break
                    time.sleep(0.02)
                if dst_done is None:
                    raise RuntimeError("QEMU destination did not complete")
                qs.poll_events()
                qd.poll_events()
                stop = qs.event_time("STOP")
                resume = qd.event_time("RESUME")
                self.r["total_ms"] = (max(dst_done, t_done_src) - t0) * 1e3
                self.r["downtime_ms"] = (resume - stop) * 1e3 if stop and resume else None
                self.r["qemu_downtime_ms"] = st.get("downtime")
                self.r["resident_ms"] = (dst_done - stop) * 1e3 if post and stop else None
                self.r["bytes"] = st.get("ram", {}).get("transferred", 0)
                self.r["cpu_src_ms"] = qmp.proc_cpu_ms(src.pid, ("CPU ",)) - c0s
                self.r["src_rss_growth_mb"] = (rss_max - rss0) / 1024
                self.r["cpu_dst_ms"] = qmp.proc_cpu_ms(dst.pid, ("CPU ",)) - c0d
                w0, runs = qmp.guest_writes(qd), False
                for _ in range(50):     # an idle guest writes one page per second
                    time.sleep(0.1)
                    if qmp.guest_writes(qd) > w0:
                        runs = True
                        break
                ok, js = qmp.pmemsave_verify(qd, self.mem << 20, f"{self.tmp}/ram.img", self.migr)
                self.r["verified"] = ok and runs
                self.r["verify"] = js
                self.r["ok"] = True
            finally:
                qs.close()
                qd.close()

    # ---- migr ----
    def migr_run(self):
        # migr-default and migr-best: `migr send`'s default mode (tail)
        mode = {"migr-postcopy": "postcopy", "migr-hybrid": "hybrid"}.get(self.variant, "tail")
        best = self.variant == "migr-best"
        sctl, dctl = f"{self.tmp}/ms.ctl", f"{self.tmp}/md.ctl"
        if self.transport == "unix":
            listen = f"unix:{self.tmp}/m.mig"
        else:
            listen = "tcp:127.0.0.1:0" + ("?channels=4" if best else "")
        with qmp.Proc([self.migr, "run", "--mem", f"{self.mem}M", "--kernel", self.elf, "--workload", self.spec,
                       "--ctl", sctl], f"{self.tmp}/ms.log") as src, \
                qmp.Proc([self.migr, "recv", "--listen", listen, "--ctl", dctl, "--timeout", str(TIMEOUT), "--json"],
                         f"{self.tmp}/md.log") as dst:
            url = None
            deadline = time.time() + 20
            while time.time() < deadline and not url:
                with open(f"{self.tmp}/md.log") as f:
                    for ln in f:
                        if "listening on " in ln:
                            url = ln.strip().rsplit(" ", 1)[1]
                time.sleep(0.05)
            if not url:
                raise RuntimeError("migr recv did not listen")
            deadline = time.time() + 120
            while time.time() < deadline:
                s = subprocess.run([self.migr, "status", "--ctl", sctl], capture_output=True, text=True)
                if s.returncode == 0 and json.loads(s.stdout).get("writes", 0) > 0:
                    break
                if not src.alive():
                    raise RuntimeError("migr run died: " + open(f"{self.tmp}/ms.log").read()[-300:])
                time.sleep(0.1)
            else:
                raise RuntimeError("the PVH guest did not start under migr")
            time.sleep(1.0)
            c0s = qmp.proc_cpu_ms(src.pid, ("migr-vcpu",))
            c0d = qmp.proc_cpu_ms(dst.pid, ("migr-vcpu",))
            argv = [self.migr, "send", "--ctl", sctl, "--to", url, "--mode", mode, "--json"]
            p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            last_src = c0s
            rss0 = rss_max = qmp.proc_rss_kb(src.pid)
            t0 = time.time()
            while p.poll() is None and time.time() - t0 < TIMEOUT:
                v = qmp.proc_cpu_ms(src.pid, ("migr-vcpu",))
                last_src = v if v > 0 else last_src      # the source exits once the guest left
                rss_max = max(rss_max, qmp.proc_rss_kb(src.pid))
                time.sleep(0.02)
            if p.poll() is None:
                p.kill()
            out, err = p.communicate()
            lines = out.strip().splitlines()
            js = json.loads(lines[-1]) if lines and lines[-1].startswith("{") else {}
            if not js.get("ok"):
                raise RuntimeError(f"migr send failed: {js.get('error') or err.strip()[-300:]}")
            self.r["total_ms"] = js.get("total_ms")
            # downtime as QEMU's is measured: source stop -> destination running, both
            # stamped with the host's wall clock (the destination's JSON summary)
            self.r["migr_paused_ms"] = js.get("downtime_ms")     # migr's own: until DONE arrived
            djs = dst_summary(f"{self.tmp}/md.log")
            self.r["dst_js"] = {k: djs.get(k) for k in ("switch_us", "fault_p50_us", "fault_p99_us", "faults",
                                                       "fault_req_us", "fault_wait_us", "fault_place_us",
                                                       "postcopy_ms", "resumed_at_s") if k in djs}
            self.r["fault_p50_us"] = djs.get("fault_p50_us") if djs.get("faults") else None
            if js.get("paused_at_s") and djs.get("resumed_at_s"):
                self.r["downtime_ms"] = (djs["resumed_at_s"] - js["paused_at_s"]) * 1e3
            else:
                self.r["downtime_ms"] = js.get("downtime_ms")
            self.r["resident_ms"] = js.get("postcopy_ms") if mode != "precopy" else None
            self.r["mode"] = js.get("mode")
            self.r["js"] = js
            self.r["bytes"] = js.get("bytes_sent", 0)
            self.r["cpu_src_ms"] = last_src - c0s
            self.r["src_rss_growth_mb"] = (rss_max - rss0) / 1024
            self.r["cpu_dst_ms"] = qmp.proc_cpu_ms(dst.pid, ("migr-vcpu",)) - c0d
            self.r["engine_cpu_ms_src"] = js.get("engine_cpu_ms")
            def writes():
                out = subprocess.run([self.migr, "status", "--ctl", dctl], capture_output=True, text=True).stdout
                return json.loads(out or "{}").get("writes", 0)
            v = subprocess.run([self.migr, "verify", "--ctl", dctl], capture_output=True, text=True, timeout=120)
            w0, runs = writes(), False
            for _ in range(50):         # an idle guest writes one page per second
                time.sleep(0.1)
                if writes() > w0:
                    runs = True
                    break
            self.r["verified"] = v.returncode == 0 and runs
            self.r["verify"] = v.stdout.strip()
            self.r["ok"] = True
            subprocess.run([self.migr, "stop", "--ctl", dctl], capture_output=True, timeout=20)

    def go(self):
        try:
            (self.qemu if self.variant.startswith("qemu") else self.migr_run)()
        except Exception as e:  # one failed run is a row, not the end of the benchmark
            self.r["error"] = str(e)[:400]
        return self.r


def dst_summary(log, wait_s=5.0):
    """The JSON summary `migr recv --json` printed once the guest arrived."""
    deadline = time.time() + wait_s
    while True:
        with open(log) as f:
            for ln in f:
                if ln.startswith("{") and '"side":"destination"' in ln:
                    return json.loads(ln)
        if time.time() > deadline:
            return {}
        time.sleep(0.02)


def variants(kind):
    if kind == "post":
        return [("qemu-postcopy", "migr-postcopy"), ("qemu-postcopy", "migr-hybrid")]
    return [("qemu-default", "migr-default"), ("qemu-best", "migr-best")]


def stats(vals):
    v = sorted(x for x in vals if x is not None)
    if not v:
        return None
    n = len(v)
    med = v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2
    return {"median": med, "min": v[0], "max": v[-1]}


def fmt(s, unit=""):
    if not s:
        return "-"
    if s["min"] == s["max"]:
        return f"{s['median']:.0f}{unit}"
    return f"{s['median']:.0f} ({s['min']:.0f}-{s['max']:.0f}){unit}"


def on_term(sig, frame):
    raise SystemExit(143)   # unwinds every `with qmp.Proc`: QEMU and migr are killed and reaped


def main():
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="1 pair, scenarios " + ", ".join(QUICK))
    ap.add_argument("--pairs", type=int, default=None, help="A B pairs per configuration (default 3)")
    ap.add_argument("--only", default="", help="only scenarios whose name contains TEXT")
    ap.add_argument("--build", default="build")
    ap.add_argument("--out", default="bench/results")
    ap.add_argument("--plot-only", action="store_true", help="redraw peers_qemu.png from peers_qemu.json")
    a = ap.parse_args()
    if a.plot_only:
        plot(a.out)
        return 0
    pairs = a.pairs or (1 if a.quick else 3)
    if not 1 <= pairs <= 20:
        sys.exit("qemu.py: --pairs: 1..20")
    if not shutil.which("qemu-system-x86_64"):
        print("SKIP: qemu-system-x86_64 is not installed (scripts/install-deps.sh --qemu installs qemu-system-x86)")
        return 77
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        print("SKIP: /dev/kvm is not usable")
        return 77
    migr, elf = os.path.abspath(f"{a.build}/migr"), os.path.abspath(f"{a.build}/bench/peers/pvh.elf")
    for f in (migr, elf, f"{a.build}/bench/peers/limits"):
        if not os.path.exists(f):
            sys.exit(f"qemu.py: {f} is missing (make bench-peers builds it)")
    qver = subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    scen = [s for s in SCENARIOS if (not a.quick or s[0] in QUICK) and a.only in s[0]]
    rows = []
    limits = {}
    started = time.time()
    os.makedirs(a.out, exist_ok=True)
    for s in scen:
        for transport in ("unix", "tcp"):
            for qv, mv in variants(s[3]):
                runs = {qv: [], mv: []}
                for i in range(pairs):
                    for v in (qv, mv):
                        with tempfile.TemporaryDirectory(prefix="migr-peers-") as tmp:
                            r = Run(tmp, migr, elf, s, transport, v).go()
                        runs[v].append(r)
                        print(f"  {s[0]:16} {transport:4} {v:14} #{i + 1}: " +
                              (f"total {r.get('total_ms', 0):.0f} ms, down {r.get('downtime_ms') or 0:.1f} ms, "
                               f"{(r.get('bytes') or 0) / 1e6:.0f} MB, verified {r.get('verified')}" +
                               ("" if r.get("verified") else f" ({r.get('verify')})")
                               if r["ok"] else f"FAILED: {r.get('error')}"), flush=True)
                rows.append(summarize(s, transport, qv, mv, runs))
        write(a.out, limits, qver, pairs, rows, started)
    # The machine's limits after the runs: they allocate and free GiBs, which
    # this VM's host backs anew only later (bench/peers/limits.c) — measured
    # first, they made the next run's destination memory hot (the first QEMU
    # idle1G run took 749 ms where the others took 3.1-4.1 s).
    limits = machine_limits(a.build, qver)
    table(rows, limits, pairs)
    write(a.out, limits, qver, pairs, rows, started)
    plot(a.out)
    return 0


def machine_limits(build, qver):
    limits = json.loads(subprocess.run([f"{build}/bench/peers/limits"], capture_output=True, text=True).stdout)
    print(f"machine: memcpy {limits['memcpy_mbps']:.0f} MB/s, unix stream into fresh memory "
          f"{limits['unix_fresh_mbps']:.0f} MB/s, populate fresh memfd {limits['populate_memfd_mbps']:.0f} / "
          f"anonymous {limits['populate_anon_mbps']:.0f} MB/s (hot: just freed); cold fresh memfd "
          f"{limits.get('populate_cold_mbps', 0):.0f} MB/s with {limits.get('populate_cold_threads', 1)} threads, "
          f"unix stream into cold memory {limits.get('unix_cold_mbps', 0):.0f} MB/s; unix round trip "
          f"(16 B out, 4 KiB back) p50 {limits.get('unix_rtt_4k_p50_us', 0):.1f} us idle, "
          f"{limits.get('unix_rtt_4k_busy_p50_us', 0):.1f} us with every CPU busy at nice +5; {qver}")
    return limits


def summarize(s, transport, qv, mv, runs):
    row = {"scenario": s[0], "mem_mib": s[1], "workload": s[2], "transport": transport, "qemu": qv, "migr": mv,
           "runs": runs}
    for v, key in ((qv, "q"), (mv, "m")):
        ok = [r for r in runs[v] if r["ok"]]
        row[key] = {f: stats([r.get(f) for r in ok]) for f in
                    ("total_ms", "downtime_ms", "resident_ms", "bytes", "cpu_src_ms", "cpu_dst_ms", "fault_p50_us",
                     "src_rss_growth_mb")}
        row[key]["verified"] = f"{sum(1 for r in runs[v] if r.get('verified'))}/{len(runs[v])}"
        # CPUs' worth of work both processes did over the migration, vCPUs not counted
        row[key]["cores"] = stats([(r["cpu_src_ms"] + r["cpu_dst_ms"]) / r["total_ms"] for r in ok
                                   if r.get("cpu_src_ms") is not None and r.get("cpu_dst_ms") is not None
                                   and r.get("total_ms")])
    ratios = []
    for rq, rm in zip(runs[qv], runs[mv]):
        if rq["ok"] and rm["ok"] and rm.get("total_ms"):
            ratios.append(rq["total_ms"] / rm["total_ms"])
    row["total_ratio_qemu_over_migr"] = stats(ratios) if ratios else None
    row["pair_ratios"] = ratios
    return row


def table(rows, limits, pairs):
    print(f"\nmedians (min-max) of {pairs} pair(s); ratio = QEMU total / migr total per pair (>1: migr faster)")
    print("cores busy = (source CPU + destination CPU, vCPU threads not counted) / total time")
    hdr = (f"{'scenario':16} {'tr':4} {'vmm':14} {'total ms':>20} {'downtime ms':>18} {'resident ms':>14} "
           f"{'MB':>7} {'cpu src/dst ms':>16} {'src RSS +MB':>11} {'verified':>8}")
    print(hdr)
    print("-" * len(hdr))
    for row in rows:
        for key, name in (("q", row["qemu"]), ("m", row["migr"])):
            d = row[key]
            mb = f"{d['bytes']['median'] / 1e6:.0f}" if d["bytes"] else "-"
            cpu = (f"{d['cpu_src_ms']['median']:.0f}/{d['cpu_dst_ms']['median']:.0f}"
                   if d["cpu_src_ms"] and d["cpu_dst_ms"] else "-")
            down = d["downtime_ms"]
            dstr = "-" if not down else (f"{down['median']:.1f} ({down['min']:.1f}-{down['max']:.1f})")
            rss = d.get("src_rss_growth_mb")
            rstr = f"{rss['max']:.1f}" if rss else "-"      # the largest growth of the runs
            print(f"{row['scenario']:16} {row['transport']:4} {name:14} {fmt(d['total_ms']):>20} {dstr:>18} "
                  f"{fmt(d['resident_ms']):>14} {mb:>7} {cpu:>16} {rstr:>11} {d['verified']:>8}")
        rr = row["total_ratio_qemu_over_migr"]
        dq, dm = row["q"]["downtime_ms"], row["m"]["downtime_ms"]
        dr = f"{dm['median'] / dq['median']:.3f}" if dq and dm and dq["median"] > 0 else "-"
        fp = row["m"].get("fault_p50_us")
        cq, cm = row["q"].get("cores"), row["m"].get("cores")
        fls = f"   cores busy QEMU {cq['median']:.2f} migr {cm['median']:.2f}" if cq and cm else ""
        print(f"{'':16} {'':4} {'ratio':14} " + (f"{rr['median']:.2f} ({rr['min']:.2f}-{rr['max']:.2f})" if rr else "-") +
              f"   downtime migr/QEMU {dr}" + (f"   migr fault p50 {fmt(fp)} us" if fp else "") + fls)


def write(out, limits, qver, pairs, rows, started):
    with open(os.path.join(out, "peers_qemu.json"), "w") as f:
        json.dump({"date": time.strftime("%Y-%m-%d %H:%M"), "qemu": qver, "pairs": pairs, "machine": limits,
                   "elapsed_s": round(time.time() - started), "rows": rows}, f, indent=1)


def plot(out):
    """The PNG through bench/plot.py's conventions: skipped without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        # Debian's python3-matplotlib is for /usr/bin/python3, which another
        # python3 earlier in PATH may hide (as bench/run.sh does).
        if os.path.realpath(sys.executable) != os.path.realpath("/usr/bin/python3") and \
                os.path.exists("/usr/bin/python3"):
            r = subprocess.run(["/usr/bin/python3", os.path.abspath(__file__), "--plot-only", "--out", out])
            if r.returncode == 0:
                return
        print("plot: matplotlib is not installed (scripts/install-deps.sh --bench); no PNG")
        return
    with open(os.path.join(out, "peers_qemu.json")) as f:
        d = json.load(f)
    rows = d["rows"]
    names = [f"{r['scenario']}\n{r['transport']} {r['qemu'][5:]}/{r['migr'][5:]}" for r in rows]
    x = list(range(len(rows)))
    med = lambda r, k, f: (r[k][f] or {}).get("median", 0) if r[k][f] else 0  # noqa: E731

    def err(k, f):  # min-max bars around the medians of the pairs
        lo = [max(0, med(r, k, f) - (r[k][f] or {}).get("min", med(r, k, f))) if r[k][f] else 0 for r in rows]
        hi = [max(0, (r[k][f] or {}).get("max", med(r, k, f)) - med(r, k, f)) if r[k][f] else 0 for r in rows]
        return [lo, hi]
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(max(8, 1.1 * len(rows)), 8), sharex=True)
    w = 0.38
    kw = dict(capsize=2, error_kw={"linewidth": 0.8})
    a1.bar([i - w / 2 for i in x], [med(r, "q", "total_ms") for r in rows], w, label="QEMU", yerr=err("q", "total_ms"), **kw)
    a1.bar([i + w / 2 for i in x], [med(r, "m", "total_ms") for r in rows], w, label="migr", yerr=err("m", "total_ms"), **kw)
    a1.set_ylabel("total (ms)")
    a1.legend(fontsize=8)
    ratios = sorted(r["total_ratio_qemu_over_migr"]["median"] for r in rows if r.get("total_ratio_qemu_over_migr"))
    down = sorted(med(r, "q", "downtime_ms") / med(r, "m", "downtime_ms") for r in rows
                  if med(r, "m", "downtime_ms") > 0 and med(r, "q", "downtime_ms") > 0)
    claim = ""
    if ratios:
        claim = (f"migr migrates the same guest {ratios[len(ratios) // 2]:.1f}x faster than QEMU (median over "
                 f"{len(ratios)} scenarios, {ratios[0]:.1f}-{ratios[-1]:.1f}x)")
        if down:
            claim += f", downtime {down[len(down) // 2]:.1f}x shorter"
        claim += "\n"
    pairs = d["pairs"]
    a1.set_title(claim + f"same PVH guest; medians of {pairs} pair(s)" + (" (min-max bars)" if pairs >= 3 else
                 ": not medians") + f"; memcpy {d['machine']['memcpy_mbps']:.0f} MB/s ({d['date']})", fontsize=9)
    a2.bar([i - w / 2 for i in x], [med(r, "q", "downtime_ms") for r in rows], w, label="QEMU", yerr=err("q", "downtime_ms"), **kw)
    a2.bar([i + w / 2 for i in x], [med(r, "m", "downtime_ms") for r in rows], w, label="migr", yerr=err("m", "downtime_ms"), **kw)
    a2.set_ylabel("downtime (ms, log)")
    a2.set_yscale("log")
    a2.set_xticks(x)
    a2.set_xticklabels(names, fontsize=7, rotation=30, ha="right")
    fig.tight_layout()
    fig.savefig(os.path.join(out, "peers_qemu.png"), dpi=100)
    print(f"plot: {os.path.join(out, 'peers_qemu.png')}")


if __name__ == "__main__":
    sys.exit(main())
