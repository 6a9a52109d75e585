#!/usr/bin/env python3
"""bench/netns: migr and QEMU 7.2 migrating the same PVH guest, holding a real
application's memory (redis-server, data=app), across shaped links between
network namespaces (links.py), interleaved run by run.

    python3 bench/netns/bench.py [--quick] [--reps N] [--links A,B] [--part sides|channels|all]

Part "sides" (default with "channels": all): on each link (1G, 10G, 1G-10ms,
1G-loss0.1%), QEMU's defaults, multifd with 4 channels, xbzrle, and multifd
with zstd, against migr's defaults (auto), migr with ?channels=4 and migr
with each fixed codec (zero = raw pages, lz4, zstd: auto is held against the
fastest of them, `auto_over_fixed_best` in the JSON's ratios). Part
"channels": on 10G-10ms and 10G-loss0.1%, migr with ?channels=1/4 and
?uring=0/1. Per run: total, downtime (source stop -> destination running:
QEMU's STOP and RESUME events; migr's `paused_at_s` and `resumed_at_s`, the
same wall clock; migr's own until-DONE figure is `migr_paused_ms`), bytes on the wire (the source veth's tx_bytes), CPU of each side
(without vCPU threads), converged, verified (QEMU: pmemsave + `migr verify
--image`; migr: `migr verify --ctl`). The link's own TCP goodput and RTT are
measured in the same run. Output: a table, bench/results/netns.json, .png.
Needs CAP_NET_ADMIN (else SKIP), /dev/kvm, qemu-system-x86_64 (else the
QEMU rows are skipped), redis-server (else SKIP). Namespaces, processes and
files are removed whatever happens.
"""
import argparse
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "peers"))
import links  # noqa: E402
import qmp  # noqa: E402
from qemu import stats, fmt, dst_summary  # noqa: E402

TIMEOUT = 90
SIDE_LINKS = ["1G", "10G", "1G-10ms", "1G-loss0.1%"]
CHANNEL_LINKS = ["10G-10ms", "10G-loss0.1%"]
QEMU_VARIANTS = {
    "qemu-default": ({}, {}),
    "qemu-multifd4": ({"multifd": True}, {"multifd-channels": 4}),
    "qemu-xbzrle": ({"xbzrle": True}, {"xbzrle-cache-size": 64 << 20}),
    "qemu-multifd-zstd": ({"multifd": True}, {"multifd-channels": 4, "multifd-compression": "zstd"}),
}
# name: (listen URL query, migr send options)
MIGR_VARIANTS = {
    "migr-default": ("", []),
    "migr-channels4": ("?channels=4", []),
    "migr-channels1": ("?channels=1", []),
    "migr-zero": ("", ["--compress", "zero"]),   # raw pages (zero pages as runs): the fixed codec for fast links
    "migr-lz4": ("", ["--compress", "lz4"]),
    "migr-zstd": ("", ["--compress", "zstd"]),
    "migr-ch1-uring0": ("?channels=1", []),
    "migr-ch1-uring1": ("?uring=1", []),
    "migr-ch4-uring0": ("?channels=4", []),
    # "?channels=4&uring=1" is refused by the URL parser (uring=1 is for one stream)
    # auto told the link's rate through the engine's rate limit (its estimate is capped by it)
    "migr-auto-bw115M": ("", ["--max-bandwidth", "115M"]),
}


class Ctx:
    def __init__(self, a, tmp):
        self.migr = os.path.abspath(f"{a.build}/migr")
        self.send_extra = a.send_extra.split()
        self.migr_b = os.path.abspath(f"{a.build_b}/migr") if a.build_b else None
        self.elf = os.path.abspath(f"{a.build}/bench/peers/pvh.elf")
        self.mem = a.mem
        self.spec = f"rate={a.rate},data=app,seed=7"
        self.tmp = tmp
        self.key = os.path.join(tmp, "link.key")
        fd = os.open(self.key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, secrets.token_hex(32).encode())
        os.close(fd)
        self.img = os.path.join(tmp, "redis.img")


def qemu_run(c, L, variant, run_dir, port):
    caps_extra, params_extra = QEMU_VARIANTS[variant]
    caps = [{"capability": "events", "state": True}] + [{"capability": k, "state": v} for k, v in caps_extra.items()]
    params = {"max-bandwidth": 1 << 40}   # QEMU's default throttle (128 MiB/s) lifted, as libvirt does
    params.update(params_extra)
    url = f"tcp:{L.dst_ip}:{port}"
    r = {"variant": variant}
    argv = lambda sock, inc: qmp.qemu_argv(c.elf, c.mem, c.spec, sock, incoming=inc) + ["-initrd", c.img]  # noqa
    with qmp.Proc(L.src_argv(argv(f"{run_dir}/qs.sock", False)), f"{run_dir}/qs.log") as src, \
            qmp.Proc(L.dst_argv(argv(f"{run_dir}/qd.sock", True)), f"{run_dir}/qd.log") as dst:
        qs, qd = qmp.QMP(f"{run_dir}/qs.sock"), qmp.QMP(f"{run_dir}/qd.sock")
        try:
            for q in (qs, qd):
                q.cmd("migrate-set-capabilities", capabilities=caps)
                q.cmd("migrate-set-parameters", **params)
            qd.cmd("migrate-incoming", uri=url)
            qmp.wait_guest_ready(qs, 120)
            time.sleep(1.0)
            c0s, c0d = qmp.proc_cpu_ms(src.pid, ("CPU ",)), qmp.proc_cpu_ms(dst.pid, ("CPU ",))
            w0 = L.wire_bytes()
            t0 = time.time()
            qs.cmd("migrate", uri=url)
            st = {}
            while time.time() - t0 < TIMEOUT:
                st = qs.cmd("query-migrate")
                if st.get("status") in ("completed", "failed", "cancelled"):
                    break
                time.sleep(0.02)
            r["converged"] = st.get("status") == "completed"
            if not r["converged"]:
                r["bytes"] = st.get("ram", {}).get("transferred", 0)
                if st.get("status") == "active":
                    qs.cmd("migrate_cancel")
                    r["error"] = f"not converged within {TIMEOUT} s (status active, cancelled)"
                else:
                    r["error"] = f"QEMU migration {st.get('status')}: {st.get('error-desc', '')}"
                return r
            t_src = time.time()
            done = None
            while time.time() - t0 < TIMEOUT + 30:
                d = qd.cmd("query-migrate")
                qd.poll_events()
                if d.get("status") == "completed" and qd.cmd("query-status").get("running"):
                    done = qd.event_time("MIGRATION", status="completed") or time.time()
                    break
                time.sleep(0.02)
            if done is None:
                r["error"] = "QEMU destination did not complete"
                return r
            qs.poll_events()
            qd.poll_events()
            stop, resume = qs.event_time("STOP"), qd.event_time("RESUME")
            r["total_ms"] = (max(done, t_src) - t0) * 1e3
            r["downtime_ms"] = (resume - stop) * 1e3 if stop and resume else None
            r["bytes"] = L.wire_bytes() - w0
            r["qemu_ram_transferred"] = st.get("ram", {}).get("transferred", 0)
            r["cpu_src_ms"] = qmp.proc_cpu_ms(src.pid, ("CPU ",)) - c0s
            r["cpu_dst_ms"] = qmp.proc_cpu_ms(dst.pid, ("CPU ",)) - c0d
            w0, runs = qmp.guest_writes(qd), False
            for _ in range(50):
                time.sleep(0.1)
                if qmp.guest_writes(qd) > w0:
                    runs = True
                    break
            ok, js = qmp.pmemsave_verify(qd, c.mem << 20, f"{run_dir}/ram.img", c.migr)
            r["verified"] = ok and runs
            r["verify"] = js
            r["ok"] = True
        finally:
            qs.close()
            qd.close()
    return r


def migr_status(c, ctl):
    s = subprocess.run([c.migr, "status", "--ctl", ctl], capture_output=True, text=True)
    return json.loads(s.stdout) if s.returncode == 0 and s.stdout.strip() else {}


def migr_run(c, L, variant, run_dir, port):
    # "<variant>@b": the same variant with --build-b's migr (A/B of two builds, interleaved)
    migr = c.migr_b if variant.endswith("@b") else c.migr
    query, extra = MIGR_VARIANTS[variant.split("@")[0]]
    sctl, dctl = f"{run_dir}/ms.ctl", f"{run_dir}/md.ctl"
    r = {"variant": variant}
    src_argv = [migr, "run", "--mem", f"{c.mem}M", "--kernel", c.elf, "--workload", c.spec,
                "--append", f"initrd={c.img}", "--ctl", sctl]
    dst_argv = [migr, "recv", "--listen", f"tcp:{L.dst_ip}:{port}{query}", "--key-file", c.key, "--ctl", dctl,
                "--timeout", str(TIMEOUT), "--json"]
    with qmp.Proc(L.src_argv(src_argv), f"{run_dir}/ms.log") as src, \
            qmp.Proc(L.dst_argv(dst_argv), f"{run_dir}/md.log") as dst:
        deadline = time.time() + 120
        while time.time() < deadline:
            if migr_status(c, sctl).get("writes", 0) > 0:
                break
            if not src.alive():
                raise RuntimeError("migr run died: " + open(f"{run_dir}/ms.log").read()[-300:])
            time.sleep(0.1)
        else:
            raise RuntimeError("the PVH guest did not start under migr")
        if not dst.alive():
            raise RuntimeError("migr recv died: " + open(f"{run_dir}/md.log").read()[-300:])
        time.sleep(1.0)
        c0s, c0d = qmp.proc_cpu_ms(src.pid, ("migr-vcpu",)), qmp.proc_cpu_ms(dst.pid, ("migr-vcpu",))
        argv = [migr, "send", "--ctl", sctl, "--to", f"tcp:{L.dst_ip}:{port}{query}", "--key-file", c.key,
                "--json"] + extra + c.send_extra
        w0 = L.wire_bytes()
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        last_src, t0 = c0s, time.time()
        while p.poll() is None and time.time() - t0 < TIMEOUT + 30:
            v = qmp.proc_cpu_ms(src.pid, ("migr-vcpu",))
            last_src = v if v > 0 else last_src      # the source exits once the guest left
            time.sleep(0.02)
        if p.poll() is None:
            p.kill()
        out, err = p.communicate()
        lines = out.strip().splitlines()
        js = json.loads(lines[-1]) if lines and lines[-1].startswith("{") else {}
        r["converged"] = bool(js.get("converged"))
        if not js.get("ok"):
            r["error"] = f"migr send failed: {js.get('error') or err.strip()[-300:]}"
            return r
        r["total_ms"] = js.get("total_ms")
        # as QEMU's: source stop -> destination running, on the host's one wall clock
        r["migr_paused_ms"] = js.get("downtime_ms")      # migr's own, until DONE is back
        djs = dst_summary(f"{run_dir}/md.log")
        r["downtime_ms"] = ((djs["resumed_at_s"] - js["paused_at_s"]) * 1e3
                            if js.get("paused_at_s") and djs.get("resumed_at_s") else js.get("downtime_ms"))
        r["switch_us"] = [js.get("switch_us"), djs.get("switch_us")]
        r["bytes"] = L.wire_bytes() - w0
        r["migr_bytes_sent"] = js.get("bytes_sent", 0)
        r["cpu_src_ms"] = last_src - c0s
        r["cpu_dst_ms"] = qmp.proc_cpu_ms(dst.pid, ("migr-vcpu",)) - c0d
        r["codecs"] = {k: v.get("pages", 0) for k, v in (js.get("codecs") or {}).items() if v.get("pages")}
        r["compress"] = js.get("compress")
        r["link_mbps_seen"] = js.get("link_mbps")
        r["rounds"] = js.get("rounds")
        r["first_pass_mbps"] = js.get("first_pass_mbps")
        r["round_stats"] = js.get("round_stats")
        v = subprocess.run([migr, "verify", "--ctl", dctl], capture_output=True, text=True, timeout=120)
        w0, runs = migr_status(c, dctl).get("writes", 0), False
        for _ in range(50):
            time.sleep(0.1)
            if migr_status(c, dctl).get("writes", 0) > w0:
                runs = True
                break
        r["verified"] = v.returncode == 0 and runs
        r["verify"] = v.stdout.strip()
        r["ok"] = True
        subprocess.run([migr, "stop", "--ctl", dctl], capture_output=True, timeout=20)
    return r


def one(c, L, variant, port):
    with tempfile.TemporaryDirectory(prefix="migr-net-", dir=c.tmp) as run_dir:
        try:
            r = (qemu_run if variant.startswith("qemu") else migr_run)(c, L, variant, run_dir, port)
        except Exception as e:  # one failed run is a row, not the end of the benchmark
            r = {"variant": variant, "error": str(e)[:400]}
    r.setdefault("ok", False)
    r["link"] = L.name
    return r


FIELDS = ("total_ms", "downtime_ms", "bytes", "cpu_src_ms", "cpu_dst_ms")


def summarize(link, lim, variant, runs):
    ok = [r for r in runs if r["ok"]]
    row = {"link": link, "variant": variant, "runs": runs, "limit": lim}
    row.update({f: stats([r.get(f) for r in ok]) for f in FIELDS})
    row["verified"] = f"{sum(1 for r in runs if r.get('verified'))}/{len(runs)}"
    row["converged"] = f"{sum(1 for r in runs if r.get('converged'))}/{len(runs)}"
    codecs = {}
    for r in ok:
        for k, v in (r.get("codecs") or {}).items():
            codecs[k] = codecs.get(k, 0) + v
    row["codec_pages"] = codecs
    return row


def table(rows):
    hdr = (f"{'link':13} {'variant':18} {'total ms':>20} {'downtime ms':>20} {'MB':>6} {'cpu src/dst ms':>15} "
           f"{'conv':>5} {'verif':>5}  codecs (migr: pages)")
    print(hdr)
    print("-" * len(hdr))
    for row in rows:
        mb = f"{row['bytes']['median'] / 1e6:.0f}" if row["bytes"] else "-"
        cpu = (f"{row['cpu_src_ms']['median']:.0f}/{row['cpu_dst_ms']['median']:.0f}"
               if row["cpu_src_ms"] and row["cpu_dst_ms"] else "-")
        d = row["downtime_ms"]
        ds = "-" if not d else f"{d['median']:.1f} ({d['min']:.1f}-{d['max']:.1f})"
        cod = " ".join(f"{k}:{v}" for k, v in sorted(row["codec_pages"].items(), key=lambda kv: -kv[1]))
        print(f"{row['link']:13} {row['variant']:18} {fmt(row['total_ms']):>20} {ds:>20} {mb:>6} {cpu:>15} "
              f"{row['converged']:>5} {row['verified']:>5}  {cod}")


FIXED_CODECS = ("migr-zero", "migr-lz4", "migr-zstd")   # one stream, one codec: what auto is held against


def ratios(rows):
    """Per link: migr-default total / the best QEMU variant's, downtime likewise (medians); and
    migr-default (auto) over the fastest fixed codec measured on the link."""
    out = {}
    for link in sorted({r["link"] for r in rows}):
        rs = {r["variant"]: r for r in rows if r["link"] == link}
        q = [r for v, r in rs.items() if v.startswith("qemu") and r["total_ms"]]
        m = rs.get("migr-default")
        fixed = [rs[v] for v in FIXED_CODECS if v in rs and rs[v]["total_ms"]]
        if m and m["total_ms"] and fixed:
            bf = min(fixed, key=lambda r: r["total_ms"]["median"])
            out.setdefault(link, {}).update(
                {"fixed_best": bf["variant"], "auto_over_fixed_best": m["total_ms"]["median"] / bf["total_ms"]["median"],
                 "auto_mb": m["bytes"]["median"] / 1e6 if m.get("bytes") else None,
                 "fixed_best_mb": bf["bytes"]["median"] / 1e6 if bf.get("bytes") else None})
        if not q or not m or not m["total_ms"]:
            continue
        best = min(q, key=lambda r: r["total_ms"]["median"])
        qd = [r["downtime_ms"]["median"] for r in q if r["downtime_ms"]]
        out.setdefault(link, {}).update({"qemu_best": best["variant"],
                     "total_migr_over_qemu_best": m["total_ms"]["median"] / best["total_ms"]["median"],
                     "downtime_migr_over_qemu_best": (m["downtime_ms"]["median"] / best["downtime_ms"]["median"]
                                                      if m["downtime_ms"] and best["downtime_ms"] else None),
                     "downtime_migr_over_qemu_min": (m["downtime_ms"]["median"] / min(qd)
                                                     if m["downtime_ms"] and qd else None)})
    return out


def write(out, meta, rows):
    meta = dict(meta, rows=rows, ratios=ratios(rows))
    with open(os.path.join(out, "netns.json"), "w") as f:
        json.dump(meta, f, indent=1)


def plot(out):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        if os.path.realpath(sys.executable) != os.path.realpath("/usr/bin/python3") and \
                os.path.exists("/usr/bin/python3"):
            r = subprocess.run(["/usr/bin/python3", os.path.abspath(__file__), "--plot-only", "--out", out])
            if r.returncode == 0:
                return
        print("plot: matplotlib is not installed (scripts/install-deps.sh --bench); no PNG")
        return
    with open(os.path.join(out, "netns.json")) as f:
        d = json.load(f)
    rows = d["rows"]
    lks = list(dict.fromkeys(r["link"] for r in rows))
    fig, axes = plt.subplots(2, len(lks), figsize=(4.2 * len(lks), 7), squeeze=False)
    for i, lk in enumerate(lks):
        rs = [r for r in rows if r["link"] == lk]
        names = [r["variant"].replace("qemu-", "Q ").replace("migr-", "m ") for r in rs]
        col = ["tab:blue" if r["variant"].startswith("qemu") else "tab:orange" for r in rs]
        for ax, f, lab in ((axes[0][i], "total_ms", "total (ms)"), (axes[1][i], "downtime_ms", "downtime (ms)")):
            med = [(r[f] or {}).get("median", 0) for r in rs]
            lo = [m - (r[f] or {}).get("min", m) for m, r in zip(med, rs)]
            hi = [(r[f] or {}).get("max", m) - m for m, r in zip(med, rs)]
            ax.bar(range(len(rs)), med, color=col, yerr=[lo, hi], capsize=2)
            ax.set_xticks(range(len(rs)))
            ax.set_xticklabels(names, rotation=45, ha="right", fontsize=7)
            ax.set_ylabel(lab, fontsize=8)
            ax.set_ylim(bottom=0)  # linear bars from 0: their heights compare
        lim = rs[0].get("limit") or {}
        axes[0][i].set_title(f"{lk}: TCP {lim.get('goodput_mbps', 0):.0f} MB/s, RTT {lim.get('rtt_ms', 0):.1f} ms",
                             fontsize=9)
    rt = d.get("ratios") or {}
    tot = [v["total_migr_over_qemu_best"] for v in rt.values() if v.get("total_migr_over_qemu_best")]
    dwn = [v["downtime_migr_over_qemu_best"] for v in rt.values() if v.get("downtime_migr_over_qemu_best")]
    claim = ""
    if tot:
        claim = (f"migr's total time is {min(tot):.2f}-{max(tot):.2f}x QEMU's best variant's per link"
                 + (f", its downtime {min(dwn):.2f}-{max(dwn):.2f}x" if dwn else "") + " (below 1: migr wins)\n")
    reps = d["reps"]
    ls, le = d.get("load_start") or [0], d.get("load_end") or [0]
    fig.suptitle(claim + f"migr (orange) vs QEMU (blue), redis memory in the guest, shaped netns links ({d['date']}, "
                 f"load {ls[0]:.1f} -> {le[0]:.1f}; " + (f"medians of {reps}, min-max bars)" if reps >= 3 else f"{reps} run(s): not medians)"),
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "netns.png"), dpi=100)
    print(f"plot: {os.path.join(out, 'netns.png')}")


def on_term(sig, frame):
    raise SystemExit(143)   # unwinds every `with`: processes killed, namespaces removed


def main():
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="1 repetition, links 1G and 1G-10ms, fewer variants")
    ap.add_argument("--reps", type=int, default=None, help="repetitions per variant, interleaved (default 3)")
    ap.add_argument("--links", default="", help="comma-separated link names (default: per part)")
    ap.add_argument("--part", default="all", choices=("sides", "channels", "all"))
    ap.add_argument("--variants", default="", help="only variants whose name contains one of these (comma-separated)")
    ap.add_argument("--mem", type=int, default=512, help="guest MiB (default 512)")
    ap.add_argument("--rate", default="16M", help="the guest's write rate (default 16M)")
    ap.add_argument("--keys", type=int, default=150000, help="redis keys before the first capture")
    ap.add_argument("--build", default="build")
    ap.add_argument("--send-extra", default="", help="options added to every `migr send` (e.g. \"--mode precopy\")")
    ap.add_argument("--build-b", default="", help="a second build: every migr variant also runs as <variant>@b "
                    "with this build's migr, interleaved (A/B of two builds)")
    ap.add_argument("--out", default="bench/results")
    ap.add_argument("--plot-only", action="store_true")
    a = ap.parse_args()
    if a.plot_only:
        plot(a.out)
        return 0
    reps = a.reps or (1 if a.quick else 3)
    why = links.can_admin()
    if why:
        print(f"SKIP: {why}")
        return 77
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        print("SKIP: /dev/kvm is not usable")
        return 77
    if not shutil.which("redis-server"):
        print("SKIP: redis-server is not installed (scripts/install-deps.sh --net)")
        return 77
    for f in (f"{a.build}/migr", f"{a.build}/bench/peers/pvh.elf", f"{a.build}/bench/netns/delayline"):
        if not os.path.exists(f):
            sys.exit(f"bench/netns: {f} is missing (make bench-net builds it)")
    have_qemu = shutil.which("qemu-system-x86_64") is not None
    if not have_qemu:
        print("SKIP (QEMU rows): qemu-system-x86_64 is not installed (scripts/install-deps.sh --qemu)")
    plan = []
    if a.part in ("sides", "all"):
        lks = ["1G", "1G-10ms"] if a.quick else SIDE_LINKS
        vs = (["qemu-default", "qemu-multifd4", "migr-default", "migr-channels4"] if a.quick else
              list(QEMU_VARIANTS) + ["migr-default", "migr-channels4", "migr-zero", "migr-lz4", "migr-zstd"])
        plan += [(lk, [v for v in vs if have_qemu or v.startswith("migr")]) for lk in lks]
    if a.part in ("channels", "all"):
        lks = CHANNEL_LINKS[:1] if a.quick else CHANNEL_LINKS
        plan += [(lk, [v for v in MIGR_VARIANTS if v.startswith("migr-ch") and v != "migr-channels4"]) for lk in lks]
    if a.links and a.variants:   # any variant on any link, e.g. --links 1G --variants migr-default,migr-auto-bw
        plan = [(lk, list(QEMU_VARIANTS) + list(MIGR_VARIANTS)) for lk in a.links.split(",")]
    if a.links:
        want = a.links.split(",")
        bad = [w for w in want if w not in links.LINKS]
        if bad:
            sys.exit(f"bench/netns: unknown link {bad[0]} (links: {', '.join(links.LINKS)})")
        plan = [(lk, vs) for lk, vs in plan if lk in want] or [(lk, list(QEMU_VARIANTS) + ["migr-default"])
                                                               for lk in want]
    if a.variants:
        keep = a.variants.split(",")
        plan = [(lk, [v for v in vs if any(k in v for k in keep)]) for lk, vs in plan]
    if a.build_b:
        plan = [(lk, [w for v in vs for w in ([v, v + "@b"] if v.startswith("migr") else [v])]) for lk, vs in plan]
    os.makedirs(a.out, exist_ok=True)
    started = time.time()
    qver = subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True,
                          text=True).stdout.split("\n")[0] if have_qemu else None
    with tempfile.TemporaryDirectory(prefix="migr-netbench-") as tmp:
        c = Ctx(a, tmp)
        r = subprocess.run([sys.executable, os.path.join(HERE, "appimage.py"), c.img, "--keys", str(a.keys)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit("bench/netns: appimage.py failed: " + (r.stderr or r.stdout)[-400:])
        image = json.loads(r.stdout.strip().splitlines()[-1])
        print(f"guest: {c.mem} MiB, workload {c.spec}; image from {image['redis'].split(' sha')[0]}: "
              f"{image['pages']} pages ({image['zero_pages_a']} zero), {image['changed']} changed by the second "
              f"capture; {qver or 'no QEMU'}; load average {os.getloadavg()[0]:.1f}", flush=True)
        meta = {"date": time.strftime("%Y-%m-%d %H:%M"), "qemu": qver, "reps": reps, "guest_mib": c.mem,
                "workload": c.spec, "image": image, "load_start": os.getloadavg()}
        rows = []
        port = 7000
        for lk, vs in plan:
            with links.Link(lk, a.build) as L:
                gp, rtt = links.measure(L, 2.0)
                lim = {"goodput_mbps": gp, "rtt_ms": rtt, "how": L.notes}
                print(f"link {lk}: TCP goodput {gp:.0f} MB/s (one stream, 2 s), connect RTT {rtt:.2f} ms"
                      + (f"; {'; '.join(L.notes)}" if L.notes else ""), flush=True)
                runs = {v: [] for v in vs}
                for i in range(reps):
                    for v in vs:
                        port += 1
                        res = one(c, L, v, port)
                        runs[v].append(res)
                        print(f"  {lk:13} {v:18} #{i + 1}: " +
                              (f"total {res.get('total_ms', 0):.0f} ms, down {res.get('downtime_ms') or 0:.1f} ms, "
                               f"{(res.get('bytes') or 0) / 1e6:.0f} MB, verified {res.get('verified')}"
                               + (f", codecs {res['codecs']}" if res.get("codecs") else "")
                               if res["ok"] else f"FAILED: {res.get('error')}"), flush=True)
                rows += [summarize(lk, lim, v, runs[v]) for v in vs]
            meta["elapsed_s"] = round(time.time() - started)
            write(a.out, meta, rows)
    meta["load_end"] = os.getloadavg()
    print(f"\nmedians (min-max) of {reps} interleaved run(s); load average "
          f"{meta['load_start'][0]:.1f} -> {meta['load_end'][0]:.1f} (the benchmark's own is ~1-2)")
    table(rows)
    rat = ratios(rows)
    for lk, x in rat.items():
        if "qemu_best" in x:
            print(f"{lk}: migr-default / {x['qemu_best']} total {x['total_migr_over_qemu_best']:.2f}, downtime "
                  + (f"{x['downtime_migr_over_qemu_best']:.3f}" if x["downtime_migr_over_qemu_best"] else "-"))
        if "fixed_best" in x:
            print(f"{lk}: auto (migr-default) / {x['fixed_best']} total {x['auto_over_fixed_best']:.2f}, "
                  f"{x['auto_mb']:.0f} MB against {x['fixed_best_mb']:.0f}")
    write(a.out, meta, rows)
    plot(a.out)
    return 0 if all(r["verified"].split("/")[0] == r["verified"].split("/")[1] for r in rows if r["total_ms"]) else 1


if __name__ == "__main__":
    sys.exit(main())
