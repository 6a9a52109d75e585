#!/usr/bin/env python3
"""Draw bench/results/*.png from the benchmarks' JSON files.

    python3 bench/plot.py [RESULTS_DIR]      (default: bench/results)

migrate.json -> migrate.png: per configuration, first-pass and overall
throughput as % of the single-thread memcpy bandwidth measured in the same
run (the raw stream ceiling of each transport drawn as a marker), and the
downtime. Without matplotlib it prints a note and exits 0: plotting never
fails a benchmark run.
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
    ax1.set_title(f"migr pre-copy, {d['params']['mem_bytes'] >> 20} MiB guest, medians of "
                  f"{d['params']['reps']}; memcpy {memcpy:.0f} MB/s", fontsize=10)
    ax1.legend(fontsize=8, loc="upper left")

    bars = ax2.bar(x, down, 0.5, color="tab:red")
    for b in bars:
        ax2.annotate(f"{b.get_height():.1f}", (b.get_x() + b.get_width() / 2, b.get_height()),
                     ha="center", va="bottom", fontsize=7)
    ax2.set_ylabel("downtime (ms)\ntarget 300 ms")
    ax2.set_ylim(0, max(max(down) * 1.25, 1))
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


PLOTTERS = {"migrate.json": plot_migrate}


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
