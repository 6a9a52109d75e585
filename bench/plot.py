#!/usr/bin/env python3
"""Draw bench/results/*.png from the benchmarks' JSON files.

    python3 bench/plot.py [RESULTS_DIR]      (default: bench/results)

migrate.json -> migrate.png: per configuration, first-pass and overall
throughput as % of the single-thread memcpy bandwidth measured in the same
run (the raw stream ceiling of each transport drawn as a marker), and the
downtime.
postcopy.json -> postcopy.png: per dirty rate and mode, total time and time
to full residence (the raw-stream floor as a line), downtime, the guest's
write rate while migrated and after as % of before, and post-copy fault
latency against the floor measured in the same run.
dirty.json -> dirty.png: per dirty tracker, harvest time against tracked size
and per dirty fraction, and the workload's slowdown while tracked.
handover.json -> handover.png: hand-over downtime per guest size next to
the pre-copy of the 256 MiB guest and the switch-over floor, and the guest
RAM actually allocated (sparse memfd) per size.
copy.json -> copy.png: every page-moving strategy of bench_copy as % of the
single-thread memcpy bandwidth per batch size, with the two aims of issue 5
(shm ring vs memcpy, tcp ?channels=4 vs the raw 4-stream loop).
Without matplotlib it prints a note and exits 0: plotting never fails a
benchmark run.
"""
import json
import os
import sys


def plot_migrate(path, out, plt):
    with open(path) as f:
        d = json.load(f)
    rows = d.get("rows", [])
    if not rows:
        print(f"plot: {path} has no rows; skipped")
        return
    m = d["machine"]
    memcpy = m["memcpy_mbps"] or 1.0
    link = {"unix": m["unix_stream_mbps"], "tcp": m["tcp_stream_mbps"]}
    names = [r["name"] + ("" if r["status"] == "ok" else "\n(FAIL)") for r in rows]
    first = [r["median"]["first_pass_pct_memcpy"] for r in rows]
    overall = [r["median"]["overall_pct_memcpy"] for r in rows]
    ceiling = [100.0 * link.get(r["transport"], 0) / memcpy for r in rows]
    down = [r["median"]["downtime_ms"] for r in rows]
    x = list(range(len(rows)))
    w = 0.38

    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(max(7, 1.3 * len(rows)), 7.5),
                                   gridspec_kw={"height_ratios": [3, 2]}, sharex=True)
    b1 = ax1.bar([i - w / 2 for i in x], first, w, label="first pass")
    b2 = ax1.bar([i + w / 2 for i in x], overall, w, label="whole migration")
    for i in x:
        ax1.hlines(ceiling[i], i - 0.45, i + 0.45, color="black", linewidth=2, zorder=3,
                   label="raw stream, same transport" if i == 0 else None)
    ax1.axhline(50, color="grey", linestyle="--", linewidth=1)
    ax1.text(len(rows) - 0.5, 51, "aim: 50% (unix)", ha="right", va="bottom", fontsize=8, color="grey")
    for bars in (b1, b2):
        for b in bars:
            ax1.annotate(f"{b.get_height():.0f}", (b.get_x() + b.get_width() / 2, b.get_height()),
                         ha="center", va="bottom", fontsize=7)
    ax1.set_ylabel("% of memcpy bandwidth")
    ax1.set_ylim(0, max(100, max(ceiling + first + overall) * 1.1))
    ok = [r for r in rows if r["status"] == "ok"]
    claim = (f"pre-copy keeps the median downtime at {max(r['median']['downtime_ms'] for r in ok):.0f} ms or less (target "
             f"300 ms); the first pass runs at {min(first):.0f}-{max(first):.0f}% of memcpy\n" if ok else "")
    ax1.set_title(claim + f"{d['params']['mem_bytes'] >> 20} MiB guest, {_runs_word(d['params']['reps'])}; "
                  f"memcpy {memcpy:.0f} MB/s", fontsize=10)
    ax1.legend(fontsize=8, loc="upper left")

    bars = ax2.bar(x, down, 0.5, color="tab:red", yerr=_minmax_err(rows, "downtime_ms", down), capsize=3)
    for b in bars:
        ax2.annotate(f"{b.get_height():.1f}", (b.get_x() + b.get_width() / 2, b.get_height()),
                     ha="center", va="bottom", fontsize=7)
    ax2.set_ylabel("downtime (ms)\ntarget 300 ms")
    ax2.set_ylim(0, max(max(down) * 1.4, 1))
    ax2.set_xticks(x)
    ax2.set_xticklabels(names, fontsize=8)
    other = d.get("other_load_cpus_run", 0)
    if other > 0.2:
        fig.text(0.01, 0.005, f"other processes used {other:.2f} CPUs during this run: figures are pessimistic",
                 fontsize=7, color="tab:red")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    print(f"plot: wrote {out}")


def _minmax_err(rows, key, med):
    """yerr (below, above) for bars at med from each row's verified runs' send[key]; None if no run data."""
    lo, hi = [], []
    for r, m in zip(rows, med):
        vals = [run["send"][key] for run in r.get("runs", []) if run.get("ok") and key in run.get("send", {})]
        lo.append(max(0, m - min(vals)) if vals else 0)
        hi.append(max(0, max(vals) - m) if vals else 0)
    return [lo, hi] if max(lo + hi, default=0) > 0 else None


def _runs_word(reps):
    return f"medians of {reps} runs (min-max bars)" if reps >= 3 else \
        f"{reps} run{'s' if reps > 1 else ''} per bar: not medians"


def _nz(v):
    return 0.0 if v is None else v


def _annotate(ax, bars, fmt="{:.0f}", fontsize=6):
    for b in bars:
        h = b.get_height()
        if h and h == h:
            ax.annotate(fmt.format(h), (b.get_x() + b.get_width() / 2, h), ha="center", va="bottom",
                        fontsize=fontsize)


def plot_postcopy(path, out, plt):
    with open(path) as f:
        d = json.load(f)
    rows = d.get("rows", [])
    if not rows:
        print(f"plot: {path} has no rows; skipped")
        return
    m = d["machine"]
    p = d["params"]
    modes = [x for x in ("precopy", "hybrid", "postcopy") if any(r["mode"] == x for r in rows)]
    wls = []
    for r in rows:
        if r["workload"] not in wls:
            wls.append(r["workload"])
    by = {(r["workload"], r["mode"]): r for r in rows}
    colors = {"precopy": "tab:blue", "hybrid": "tab:orange", "postcopy": "tab:green"}
    w = 0.8 / max(1, len(modes))
    x = list(range(len(wls)))

    def med(wl, mode, key):
        r = by.get((wl, mode))
        if not r:
            return 0.0
        return _nz(r["median"].get(key))

    def label(wl, mode):
        r = by.get((wl, mode))
        return "" if not r or r["status"] == "ok" else "FAIL"

    fig, axs = plt.subplots(2, 2, figsize=(13, 9))
    ax = axs[0][0]
    for i, mode in enumerate(modes):
        xs = [k - 0.4 + w * (i + 0.5) for k in x]
        bars = ax.bar(xs, [med(wl, mode, "total_ms") for wl in wls], w, color=colors[mode], alpha=0.45,
                      label=f"{mode}: total")
        _annotate(ax, bars)
        if mode != "precopy":
            ax.bar(xs, [med(wl, mode, "residence_ms") for wl in wls], w * 0.5, color=colors[mode],
                   label=f"{mode}: post-copy phase (to full residence)")
        for k, wl in enumerate(wls):
            if label(wl, mode):
                ax.annotate("FAIL", (xs[k], 0), ha="center", va="bottom", color="red", fontsize=8)
    floor = p["mem_bytes"] / m["unix_stream_mbps"] / 1e3 if m.get("unix_stream_mbps") else 0
    if p.get("link_mbps"):
        floor = p["mem_bytes"] / p["link_mbps"] / 1e3  # RAM through the limited link
    if floor:
        ax.axhline(floor, color="black", linewidth=1.5)
        through = f"the {p['link_mbps']:.0f} MB/s link" if p.get("link_mbps") else "the raw unix stream"
        ax.text(len(wls) - 0.5, floor, f"RAM through {through}: {floor:.0f} ms", ha="right",
                va="bottom", fontsize=7)
    top = max([med(wl, mode, "total_ms") for wl in wls for mode in modes] + [floor, 1.0])
    ax.set_ylim(0, top * 1.5)  # room for the legend
    ax.set_xticks(x)
    ax.set_xticklabels(wls)
    ax.set_ylabel("ms")
    ax.set_title("migration time (bars) and post-copy phase (inner bars)", fontsize=9)
    ax.legend(fontsize=6, loc="upper left")

    ax = axs[0][1]
    for i, mode in enumerate(modes):
        xs = [k - 0.4 + w * (i + 0.5) for k in x]
        bars = ax.bar(xs, [max(med(wl, mode, "downtime_ms"), 1e-3) for wl in wls], w, color=colors[mode],
                      label=f"{mode}: source paused -> DONE")
        _annotate(ax, bars, "{:.1f}")
        ax.plot(xs, [max(med(wl, mode, "dst_downtime_ms"), 1e-3) for wl in wls], "k_", markersize=12,
                label="destination: SWITCHOVER -> resumed" if i == 0 else None)
    ax.set_yscale("log")
    ax.set_ylim(top=3000)  # room for the legend above the 300 ms target
    ax.set_xticks(x)
    ax.set_xticklabels(wls)
    ax.set_ylabel("downtime (ms, log)")
    ax.axhline(300, color="grey", linestyle="--", linewidth=1)
    ax.set_title("downtime (target 300 ms, dashed)", fontsize=9)
    ax.legend(fontsize=6, loc="upper left")

    ax = axs[1][0]
    names, live, pc, after = [], [], [], []
    for wl in wls:
        for mode in modes:
            r = by.get((wl, mode))
            if not r:
                continue
            mm = r["median"]
            before = _nz(mm.get("writes_per_s_before")) or 1.0
            names.append(f"{wl}\n{mode}" + ("\n(FAIL)" if r["status"] != "ok" else ""))
            live.append(100 * _nz(mm.get("writes_per_s_live_src")) / before)
            pc.append(100 * _nz(mm.get("writes_per_s_postcopy_dst")) / before)
            after.append(100 * _nz(mm.get("writes_per_s_after")) / before)
    xx = list(range(len(names)))
    ww = 0.27
    _annotate(ax, ax.bar([i - ww for i in xx], live, ww, color="tab:blue", label="source, pre-copy rounds"))
    _annotate(ax, ax.bar(xx, pc, ww, color="tab:red", label="destination, post-copy phase"))
    _annotate(ax, ax.bar([i + ww for i in xx], after, ww, color="tab:grey", label="destination, after"))
    ax.axhline(100, color="black", linewidth=1)
    ax.set_ylim(0, max(live + pc + after + [100]) * 1.3)
    ax.set_xticks(xx)
    ax.set_xticklabels(names, fontsize=6)
    ax.set_ylabel("guest page writes/s, % of before")
    ax.set_title("what the migration costs the guest", fontsize=9)
    ax.legend(fontsize=6, loc="upper right")

    ax = axs[1][1]
    pcr = [r for r in rows if r["mode"] != "precopy"]
    xx = list(range(len(pcr)))
    p50 = [max(_nz(r["median"].get("fault_p50_us")), 1e-3) for r in pcr]
    p99 = [max(_nz(r["median"].get("fault_p99_us")), 1e-3) for r in pcr]
    mx = [max(_nz(r["median"].get("fault_max_us")), 1e-3) for r in pcr]
    _annotate(ax, ax.bar([i - 0.2 for i in xx], p50, 0.4, color="tab:purple", label="p50"))
    _annotate(ax, ax.bar([i + 0.2 for i in xx], p99, 0.4, color="tab:pink", label="p99"))
    ax.plot([i + 0.2 for i in xx], mx, "kv", markersize=4, label="max")
    fl = _nz(m.get("fault_floor_us"))
    ft = d.get("first_touch", {})
    ept = 0.0
    for v in ft.get("variants", []):
        if v["name"] == "populated" and v["median"].get("first_touch_ns_per_page"):
            ept = v["median"]["first_touch_ns_per_page"] / 1e3
    if fl:
        ax.axhline(fl + ept, color="black", linewidth=1.5)
        ax.text(len(pcr) - 0.5, (fl + ept) * 1.1, f"floor {fl + ept:.1f} us (unix round trip + local uffd fault"
                + (" + KVM first touch" if ept else "") + ")", ha="right", va="bottom", fontsize=7)
    ax.set_yscale("log")
    ax.set_ylim(top=max(mx + [1.0]) * 20)  # room for the legend
    ax.set_xticks(xx)
    ax.set_xticklabels([r["name"].replace("/", "\n") for r in pcr], fontsize=7)
    ax.set_ylabel("fault -> page placed (us, log)")
    ax.set_title("post-copy fault service latency (destination)", fontsize=9)
    ax.legend(fontsize=6, loc="upper left")

    note = (f"migr pre-copy / hybrid / {'cancellable ' if not p.get('no_cancel') else ''}post-copy over unix, "
            f"{p['mem_bytes'] >> 20} MiB guest, {_runs_word(p['reps'])}")
    dm = {x: [r["median"]["downtime_ms"] for r in rows if r["mode"] == x and r["status"] == "ok"] for x in modes}
    if dm.get("precopy") and dm.get("postcopy"):
        note = (f"post-copy pauses the guest {max(dm['postcopy']):.1f} ms or less, pre-copy up to "
                f"{max(dm['precopy']):.0f} ms\n" + note)
    if p.get("link_mbps"):
        note += f", link limited to {p['link_mbps']:.0f} MB/s"
    if ft.get("measured"):
        parts = [f"{v['name']}: +{_nz(v['median'].get('first_touch_ns_per_page')) / 1e3:.1f} us"
                 for v in ft.get("variants", [])]
        note += "; first touch of a guest page " + ", ".join(parts)
    fig.suptitle(note, fontsize=10)
    other = d.get("other_load_cpus_run", 0)
    if other > 0.2:
        fig.text(0.01, 0.005, f"other processes used {other:.2f} CPUs during this run: figures are pessimistic",
                 fontsize=7, color="tab:red")
    fig.tight_layout(rect=(0, 0.01, 1, 0.97))
    fig.savefig(out, dpi=100)
    plt.close(fig)
    print(f"plot: wrote {out}")


def plot_handover(path, out, plt):
    with open(path) as f:
        d = json.load(f)
    rows = d.get("rows", [])
    if not rows:
        print(f"plot: {path} has no rows; skipped")
        return
    m = d["machine"]
    names = [r["name"] + ("" if r["status"] == "ok" else "\n(FAIL)") for r in rows]
    x = list(range(len(rows)))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.8))
    down = [max(r["median"]["downtime_ms"], 1e-3) for r in rows]
    dst = [max(r["median"]["dst_downtime_ms"], 1e-3) for r in rows]
    cols = ["tab:green" if r["mode"] == "handover" else "tab:blue" for r in rows]
    bars = ax1.bar(x, down, 0.55, color=cols, yerr=_minmax_err(rows, "downtime_ms", down), capsize=3)
    _annotate(ax1, bars, "{:.2f}", 8)
    ax1.plot(x, dst, "k_", markersize=18, label="destination: SWITCHOVER -> resumed")
    setup = [max(r["median"].get("dst_vm_setup_ms", 0), 1e-3) for r in rows]
    ax1.plot(x, setup, "rx", markersize=8, label="building the destination VM on the memfd (timed apart)")
    fl = m.get("floor_us", 0) / 1e3
    if fl:
        ax1.axhline(fl, color="black", linewidth=1.5, linestyle="--")
        ax1.text(len(rows) - 0.5, fl * 1.1, f"floor {fl:.2f} ms: pause+save+load+resume + 2 unix round trips",
                 ha="right", va="bottom", fontsize=7)
    ax1.set_yscale("log")
    ax1.set_ylim(top=max(down) * 20)
    ax1.set_xticks(x)
    ax1.set_xticklabels(names, fontsize=8)
    ax1.set_ylabel("downtime, source paused -> DONE (ms, log)")
    ax1.set_title(f"hand-over (green) vs pre-copy (blue), {_runs_word(d['params']['reps'])}", fontsize=9)
    ho = [r for r in rows if r["mode"] == "handover" and r["status"] == "ok"]
    pc = [r for r in rows if r["mode"] != "handover" and r["status"] == "ok"]
    if ho:
        fig.suptitle(f"a zero-copy hand-over pauses the guest (median) {max(r['median']['downtime_ms'] for r in ho):.2f} ms "
                     f"or less up to {max(r['mem_bytes'] for r in ho) >> 30} GiB"
                     + (f" (pre-copy of {pc[0]['mem_bytes'] >> 20} MiB: {pc[0]['median']['downtime_ms']:.1f} ms)"
                        if pc else "") + " and allocates only the working set", fontsize=10)
    ax1.legend(fontsize=7, loc="upper left")

    ram = [r["mem_bytes"] / 2**20 for r in rows]
    src = [r["median"]["src_memfd_bytes"] / 2**20 for r in rows]
    dstm = [r["median"]["dst_memfd_bytes"] / 2**20 for r in rows]
    w = 0.27
    _annotate(ax2, ax2.bar([i - w for i in x], ram, w, color="lightgrey", label="guest RAM"), "{:.0f}", 7)
    _annotate(ax2, ax2.bar(x, src, w, color="tab:orange", label="allocated, source"), "{:.0f}", 7)
    _annotate(ax2, ax2.bar([i + w for i in x], dstm, w, color="tab:brown", label="allocated, destination"),
              "{:.0f}", 7)
    ax2.set_yscale("log")
    ax2.set_xticks(x)
    ax2.set_xticklabels(names, fontsize=8)
    ax2.set_ylabel("MiB (log)")
    ax2.set_title(f"memfd RAM actually allocated ({d['params']['workload_spec']})", fontsize=9)
    ax2.legend(fontsize=7, loc="upper left")
    other = d.get("other_load_cpus_run", 0)
    if other > 0.2:
        fig.text(0.01, 0.005, f"other processes used {other:.2f} CPUs during this run: figures are pessimistic",
                 fontsize=7, color="tab:red")
    fig.tight_layout(rect=(0, 0.02, 1, 0.95))
    fig.savefig(out, dpi=100)
    plt.close(fig)
    print(f"plot: wrote {out}")


def plot_dirty(path, out, plt):
    """dirty.json -> dirty.png: harvest time against tracked size at 1% dirty
    (one line per tracker and memory kind, the 2 ms aim at 16 GiB marked),
    harvest time per dirty fraction at 1 GiB, and the workload's write rate
    while tracked as % of untracked."""
    with open(path) as f:
        d = json.load(f)
    rows = d.get("rows", [])
    if not rows:
        print(f"plot: {path} has no rows; skipped")
        return
    m = d["machine"]
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(16, 5), gridspec_kw={"width_ratios": [3, 3, 2]})
    keys = []
    for r in rows:
        k = (r["tracker"], r["mode"])
        if k not in keys:
            keys.append(k)
    for k in keys:
        pts = sorted((r["size_bytes"] >> 30, r["harvest_ms"]) for r in rows
                     if (r["tracker"], r["mode"]) == k and abs(r["dirty_frac"] - 0.01) < 1e-9)
        if pts:
            ax1.plot([p[0] for p in pts], [p[1] for p in pts], marker="o",
                     label=k[0] if k[1] == "kvm" else f"{k[0]} ({k[1]})")
    ax1.axhline(2.0, color="grey", linestyle="--", linewidth=1)
    ax1.text(1, 2.1, "aim: 16 GiB at 1% in 2 ms", fontsize=8, color="grey")
    ax1.set_xscale("log", base=2)
    ax1.set_yscale("log")
    ax1.set_xlabel("tracked GiB")
    ax1.set_ylabel("harvest ms (median)")
    ax1.set_title("harvest at 1% dirty (isolated pages)", fontsize=10)
    ax1.legend(fontsize=7)
    fr = sorted({r["dirty_frac"] for r in rows})
    one = [k for k in keys if any(r["size_bytes"] == 1 << 30 and (r["tracker"], r["mode"]) == k for r in rows)]
    w = 0.8 / max(1, len(fr))
    for j, fv in enumerate(fr):
        vals = []
        for k in one:
            v = [r["harvest_ms"] for r in rows if (r["tracker"], r["mode"]) == k and r["size_bytes"] == 1 << 30
                 and r["dirty_frac"] == fv]
            vals.append(v[0] if v else 0)
        bars = ax2.bar([i + (j - (len(fr) - 1) / 2) * w for i in range(len(one))], vals, w, label=f"{fv * 100:g}% dirty")
        _annotate(ax2, bars, fmt="{:.2f}")
    ax2.set_xticks(range(len(one)))
    ax2.set_xticklabels([k[0] if k[1] == "kvm" else f"{k[0]}\n({k[1]})" for k in one], fontsize=7, rotation=30)
    ax2.set_yscale("log")
    ax2.set_ylabel("harvest ms, 1 GiB")
    ax2.set_title(f"1 GiB; memcpy {m['memcpy_mbps']:.0f} MB/s, read {m['read_mbps']:.0f} MB/s", fontsize=10)
    ax2.legend(fontsize=7)
    sl = d.get("slowdown", [])
    if sl:
        pct = [100.0 * s["tracked_wps"] / s["untracked_wps"] if s["untracked_wps"] else 0 for s in sl]
        bars = ax3.bar(range(len(sl)), pct)
        _annotate(ax3, bars)
        ax3.set_xticks(range(len(sl)))
        ax3.set_xticklabels([s["tracker"] for s in sl], fontsize=7, rotation=30)
        ax3.axhline(100, color="grey", linewidth=1)
        ax3.set_ylabel("write rate tracked, % of untracked")
        ax3.set_title("workload while tracked (harvest every 5 ms)", fontsize=10)
    big = [r for r in rows if abs(r["dirty_frac"] - 0.01) < 1e-9 and r["size_bytes"] == max(x["size_bytes"] for x in rows)]
    claim = ""
    if big:
        b = min(big, key=lambda r: r["harvest_ms"])
        claim = (f"{b['tracker']} harvests {b['size_bytes'] >> 30} GiB at 1% dirty in {b['harvest_ms']:.2f} ms "
                 f"(aim: 2 ms); ")
    fig.suptitle(claim + f"migr dirty trackers ({'quick, ' if d.get('quick') else ''}medians of {d.get('reps')}"
                 f"{'' if (d.get('reps') or 0) >= 3 else ': not medians'}; kernel {d.get('kernel', '?')})",
                 fontsize=10)
    fig.tight_layout()
# copy.png: two panels, so that no panel has more series than distinct colours.
COPY_IN_MEMORY = ("memcpy", "avx", "rep-movsb", "memfd-handover", "shm")


def plot_copy(path, out, plt):
    with open(path) as f:
        d = json.load(f)
    rows = [r for r in d.get("rows", []) if r["status"] == "ok"]
    if not rows:
        print(f"plot: {path} has no rows; skipped")
        return
    memcpy = d["machine"]["memcpy_mbps"] or 1.0
    batches = d["batches"]
    series = {}
    for r in rows:
        key = r["strategy"] + (f" x{r['threads']}" if r["threads"] > 1 else "")
        series.setdefault(key, {})[r["batch"]] = 100.0 * r["mbps"] / memcpy
    shm = series.get("shm", {})
    best_shm = max(shm.values()) if shm else 0
    fig, axes = plt.subplots(1, 2, figsize=(13, 6), sharey=True)
    groups = (("copies in memory: libc, SIMD, shared memory", lambda n: n.startswith(COPY_IN_MEMORY)),
              ("through the kernel: pipes, sockets, syscalls", lambda n: not n.startswith(COPY_IN_MEMORY)))
    bold = {"shm": "tab:blue", "tcp?channels=4 x4": "tab:red", "tcp-raw-4 x4": "tab:green", "memcpy-libc": "black"}
    markers = ["o", "s", "^", "v", "D", "P", "X", "<", ">", "h"]
    cmap = plt.get_cmap("tab10")
    for ax, (title, member) in zip(axes, groups):
        k = 0
        for name, pts in sorted(series.items(), key=lambda kv: (kv[0] not in bold, kv[0])):
            if not member(name):
                continue
            xs = [b for b in batches if b in pts]
            ys = [pts[b] for b in xs]
            if name in bold:
                style = dict(color=bold[name], linewidth=2.6, marker="o", markersize=4, zorder=3)
            else:
                # tab10 without the bold series' blue, green, red: each thin series its own colour + marker
                style = dict(color=cmap((1, 4, 5, 6, 7, 8, 9)[k % 7]), linewidth=1.2,
                             marker=markers[k % len(markers)], markersize=4, linestyle="--" if k < 7 else ":")
                k += 1
            if len(xs) == 1:
                style.update(marker="*", markersize=12, linestyle="none")
            ax.plot(xs, ys, label=name, **style)
        ax.axhline(80, color="grey", linestyle=":", linewidth=1)
        ax.text(batches[0], 81, "aim: shm >= 80% of memcpy", fontsize=7, color="grey", va="bottom")
        a = d.get("aims", {})
        if a.get("raw_multi_best_mbps"):
            y = 90.0 * a["raw_multi_best_mbps"] / memcpy
            ax.axhline(y, color="tab:red", linestyle=":", linewidth=1)
            ax.text(batches[0], y + 1, "aim: tcp?channels=4 >= 90% of the best raw 4-stream loop", fontsize=7,
                    color="tab:red", va="bottom")
        ax.set_xscale("log", base=2)
        ax.set_xticks(batches)
        ax.set_xticklabels([f"{b >> 10}K" if b < 1 << 20 else f"{b >> 20}M" for b in batches])
        ax.set_xlabel("batch (bytes per call; transports get an iovec of 4 KiB pages)")
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=7, ncol=2, loc="upper left")
    axes[0].set_ylabel("% of single-thread memcpy (median)")
    fig.suptitle(f"shm moves 4 KiB pages between processes at up to {best_shm:.0f}% of memcpy "
                 f"(aim >= 80%); sockets stay below {max(max(v.values()) for n, v in series.items() if not n.startswith(COPY_IN_MEMORY)):.0f}%\n"
                 f"{d['params']['total_bytes'] >> 20} MiB per run, medians of {d['params']['reps']} runs "
                 f"(copy.json keeps no per-run figures: no min-max bars); memcpy {memcpy:.0f} MB/s", fontsize=10)
    other = d.get("other_load_cpus_run", 0)
    if other > 0.2:
        fig.text(0.01, 0.005, f"other processes used {other:.2f} CPUs during this run: figures are pessimistic",
                 fontsize=7, color="tab:red")
    fig.tight_layout(rect=(0, 0.02, 1, 1))
    fig.savefig(out, dpi=100)
    plt.close(fig)
    print(f"plot: wrote {out}")


def _runs_minmax(r, key):
    """min and max of key over a row's verified runs (the send side's summary)."""
    vals = [run["send"][key] for run in r.get("runs", []) if run.get("ok") and key in run.get("send", {})]
    return (min(vals), max(vals)) if vals else (0, 0)


def plot_compress_e2e(path, out, plt):
    with open(path) as f:
        d = json.load(f)
    rows = d.get("rows", [])
    if not rows:
        print(f"plot: {path} has no rows; skipped")
        return
    none = {}
    for r in rows:
        if r.get("compress") == "none":
            none[(r["workload"], r["transport"])] = r["median"]["bytes_sent"]
    names = [r["name"] + ("" if r["status"] == "ok" else "\n(FAIL)") for r in rows]
    mb = [r["median"]["bytes_sent"] / 1e6 for r in rows]
    ratio = [none.get((r["workload"], r["transport"]), 0) / r["median"]["bytes_sent"]
             if r["median"]["bytes_sent"] else 0 for r in rows]
    x = list(range(len(rows)))
    reps = sorted({r.get("reps", d["params"]["reps"]) for r in rows})
    runs = f"medians of {reps[0]} runs (min-max bars)" if reps == [reps[0]] and reps[0] >= 3 else \
        f"{'/'.join(str(n) for n in reps)} run(s) per bar: single runs, not medians"
    link = d["params"].get("max_bandwidth_mbps")
    fig, (ax1, ax2, ax3) = plt.subplots(3, 1, figsize=(max(7, 1.2 * len(rows)), 9), sharex=True)
    bars = ax1.bar(x, mb, 0.5)
    for b, q in zip(bars, ratio):
        ax1.annotate(f"{b.get_height():.0f} MB\n{q:.2f}x" if q else f"{b.get_height():.0f} MB",
                     (b.get_x() + b.get_width() / 2, b.get_height()), ha="center", va="bottom", fontsize=7)
    ax1.set_ylabel("bytes on the wire (MB)\nx = fewer than none")
    ax1.set_title("bytes on the wire", fontsize=9)
    for ax, key, colour, label in ((ax2, "downtime_ms", "tab:red", "downtime (ms)"),
                                   (ax3, "total_ms", "tab:orange", "total time (ms)")):
        med = [r["median"][key] for r in rows]
        mm = [_runs_minmax(r, key) for r in rows]
        err = [[max(0, m - lo) for m, (lo, hi) in zip(med, mm)], [max(0, hi - m) for m, (lo, hi) in zip(med, mm)]]
        bars = ax.bar(x, med, 0.5, color=colour, yerr=err if max(max(err[0]), max(err[1])) > 0 else None,
                      capsize=3)
        _annotate(ax, bars)
        ax.set_ylabel(label)
        ax.set_title(label + (" (target %d ms, dashed)" % d["params"]["downtime_target_ms"]
                              if key == "downtime_ms" else ""), fontsize=9)
        if key == "downtime_ms":
            ax.axhline(d["params"]["downtime_target_ms"], color="grey", linestyle="--", linewidth=1)
    ax3.set_xticks(x)
    ax3.set_xticklabels(names, fontsize=7, rotation=20)
    ok = [(r, q) for r, q in zip(rows, ratio) if r["status"] == "ok"]
    claim = ""
    if ok:
        best, q = min(ok, key=lambda rq: rq[0]["median"]["downtime_ms"])
        claim = (f"{best['name']}: downtime {best['median']['downtime_ms']:.0f} ms"
                 + (f", {q:.1f}x fewer bytes than none" if q else "") + "; ")
    fig.suptitle(claim + f"page codecs end to end: {d['params']['mem_bytes'] >> 20} MiB guest"
                 + (f", link limited to {link} MB/s" if link else "") + f"\n{runs}", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    print(f"plot: wrote {out}")


PLOTTERS = {"migrate.json": plot_migrate, "postcopy.json": plot_postcopy, "postcopy_link.json": plot_postcopy, "handover.json": plot_handover,
            "dirty.json": plot_dirty, "copy.json": plot_copy,
            "compress_e2e.json": plot_compress_e2e, "compress_link100.json": plot_compress_e2e}


def main():
    res = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("plot: matplotlib is not installed (scripts/install-deps.sh --bench); no plots drawn")
        return 0
    for name, fn in PLOTTERS.items():
        path = os.path.join(res, name)
        if not os.path.exists(path):
            continue
        try:
            fn(path, path[:-len(".json")] + ".png", plt)
        except Exception as e:  # a plot must never fail the benchmark run
            print(f"plot: {name}: {type(e).__name__}: {e}; skipped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
