#!/usr/bin/env python3
"""Write the fault matrix of docs/reliability.md from matrix.py's results.

  table.py RESULTS.jsonl [DOC]   (DOC default docs/reliability.md)

Replaces what lies between the lines "<!-- matrix:begin -->" and
"<!-- matrix:end -->" with: one table per mode (rows: phases, columns:
faults, each cell the observed outcome, marked where it differs from the
expectation or is a known bug), then the list of known bugs and failures.
"""
import json
import sys

SHORT = {"src": "src", "dst": "dst", "lost": "lost", "doubt": "doubt"}


def main():
    res = [json.loads(ln) for ln in open(sys.argv[1]) if ln.strip()]
    doc = sys.argv[2] if len(sys.argv) > 2 else "docs/reliability.md"
    modes, phases, faults, cell = [], {}, [], {}
    for r in res:
        if r["mode"] not in modes:
            modes.append(r["mode"])
            phases[r["mode"]] = []
        if r["phase"] not in phases[r["mode"]]:
            phases[r["mode"]].append(r["phase"])
        if r["fault"] not in faults:
            faults.append(r["fault"])
        cell[(r["mode"], r["phase"], r["fault"])] = r
    npass = sum(r["ok"] and not r.get("known_bug") for r in res)
    nbug = sum(bool(r.get("known_bug")) for r in res)
    nfail = sum(not r["ok"] for r in res)
    out = ["%d cases (backend %s): %d as expected, %d known bugs (marked ¹), %d failed (marked ✗)."
           % (len(res), res[0].get("backend", "?") if res else "?", npass, nbug, nfail), ""]
    for m in modes:
        out.append("**%s**" % m)
        out.append("")
        out.append("| phase | " + " | ".join(faults) + " |")
        out.append("|---|" + "---|" * len(faults))
        for ph in phases[m]:
            row = []
            for f in faults:
                r = cell.get((m, ph, f))
                if not r:
                    row.append("")
                    continue
                v = SHORT.get(r["observed"], r["observed"])
                if r.get("known_bug"):
                    v += " ¹"
                elif not r["ok"]:
                    v += " ✗ (expected %s)" % r["expected"]
                row.append(v)
            out.append("| %s | %s |" % (ph, " | ".join(row)))
        out.append("")
    bugs = {}
    for r in res:
        if r.get("known_bug"):
            bugs.setdefault(r["known_bug"], []).append("%s/%s/%s" % (r["mode"], r["phase"], r["fault"]))
    if bugs:
        out.append("Known bugs (¹):")
        out.append("")
        for b, cases in bugs.items():
            out.append("- %s — %d cases (%s%s)" % (b, len(cases), ", ".join(cases[:4]), ", …" if len(cases) > 4 else ""))
        out.append("")
    fails = [r for r in res if not r["ok"]]
    if fails:
        out.append("Failed (✗):")
        out.append("")
        for r in fails:
            out.append("- %s/%s/%s: expected %s, got %s: %s" % (r["mode"], r["phase"], r["fault"], r["expected"],
                                                              r["observed"], r["why"] or r["send_msg"][:160]))
        out.append("")
    text = open(doc).read()
    a, b = text.index("<!-- matrix:begin -->"), text.index("<!-- matrix:end -->")
    text = text[: a + len("<!-- matrix:begin -->")] + "\n" + "\n".join(out) + text[b:]
    open(doc, "w").write(text)


if __name__ == "__main__":
    main()
