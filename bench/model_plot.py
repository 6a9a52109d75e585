#!/usr/bin/env python3
"""Draw the cluster throughput model like Fig. 7 of seed paper 002.

    migr model --plot fig7.png [model options]          (runs this script)
    migr model --json [options] | python3 bench/model_plot.py -o fig7.png
    python3 bench/model_plot.py -o fig7.png model.json

Input: the JSON object of `migr model --json` (params, methods, rows). Plots
P/(m·p) of every method over the host count m (log scale) and marks where
migration starts to beat Cold-VM Reboot. Exits 3 without matplotlib
(scripts/install-deps.sh --bench installs it), 2 on bad input.
"""
import argparse
import json
import sys

STYLE = {
    "warm": dict(color="tab:red", lw=2.2),
    "cold": dict(color="tab:blue", lw=1.8),
    "migrate": dict(color="tab:green", ls="--"),
    "live": dict(color="tab:purple", ls="-."),
    "live-rc": dict(color="tab:orange", ls=":", lw=2),
    "migr-live": dict(color="black", ls="-", lw=1.2),
    "migr-handover": dict(color="tab:brown", ls="-", lw=2.2),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--out", required=True, help="PNG file to write")
    ap.add_argument("json", nargs="?", help="migr model --json output (default: stdin)")
    ap.add_argument("--quiet-missing", action="store_true",
                    help="exit 3 silently without matplotlib (migr model reports it)")
    a = ap.parse_args()
    try:
        d = json.load(open(a.json) if a.json else sys.stdin)
        methods, rows = d["methods"], d["rows"]
        if not rows:
            raise ValueError("no rows")
    except (OSError, ValueError, KeyError) as e:
        print(f"model_plot: bad input: {e}", file=sys.stderr)
        return 2
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        if not a.quiet_missing:
            print("model_plot: matplotlib is not installed (scripts/install-deps.sh --bench)", file=sys.stderr)
        return 3

    hosts = [r["hosts"] for r in rows]
    fig, ax = plt.subplots(figsize=(8, 5))
    for m in methods:
        eq = f" {m['equation']}" if m["equation"] else ""
        ax.plot(hosts, [r[m["name"]] for r in rows], label=f"{m['label']}{eq}",
                **STYLE.get(m["name"], {}))
    # The interesting band is between the methods' limits; spare-host methods
    # climb into it from 0, as in the paper's figure.
    f = [m["factor"] for m in methods]
    spread = max(max(f) - min(f), 1e-6)
    ax.set_ylim(min(f) - 1.5 * spread, max(f) + 0.5 * spread)
    cross = d.get("crossover_hosts")
    if cross and hosts[0] <= cross <= hosts[-1]:
        ax.axvline(cross, color="grey", lw=0.8)
        ax.annotate(f"migration beats cold reboot\nfrom m = {cross:,}", (cross, min(f) - 0.4 * spread),
                    xytext=(-8, 0), textcoords="offset points", ha="right", fontsize=8, color="dimgrey")
    p = d["params"]
    ax.set_xscale("log")
    ax.set_xlabel("hosts in the cluster m")
    ax.set_ylabel("P / (m·p)")
    ax.set_title(f"Total throughput by VMM rejuvenation method (n = {p['vms']}, "
                 f"T_vmm = {p['t_vmm_s'] / 86400:g} d, T_os = {p['t_os_s'] / 86400:g} d)", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(a.out, dpi=120)
    return 0


if __name__ == "__main__":
    sys.exit(main())
