#!/usr/bin/python3
"""report.py - the executor benchmark's results table, from bench/run.sh's JSON files.

    report.py OUT_DIR TOOL...

Reads OUT_DIR/TOOL.SCENARIO.json (hyperfine's --export-json, or run.sh's
own loop in the same shape) and OUT_DIR/machine.md; prints markdown.
"""
import json
import os
import statistics
import sys

SCENARIOS = [("cold", "cold run from nothing"),
             ("noop", "no-op re-run"),
             ("touch", "re-run after changing input.txt")]
TARGETS = {"cold": ("make", 1.0), "noop": ("ninja", 1.5)}


def times(out, tool, scen):
    path = os.path.join(out, "%s.%s.json" % (tool, scen))
    if not os.path.exists(path):
        return None
    with open(path) as fh:
        return json.load(fh)["results"][0]["times"]


def fmt(sec):
    if sec is None:
        return "-"
    if sec < 1:
        return "%.1f ms" % (sec * 1000)
    return "%.2f s" % sec if sec < 10 else "%.1f s" % sec


def main():
    out, tools = sys.argv[1], sys.argv[2:]
    with open(os.path.join(out, "machine.md")) as fh:
        print(fh.read().rstrip() + "\n")
    ratios = [t for t in ("make", "ninja") if t in tools and "kpipe" in tools]
    head = ["scenario"] + tools + ["kpipe/%s" % t for t in ratios] + ["target"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for scen, label in SCENARIOS:
        med = {}
        for t in tools:
            ts = times(out, t, scen)
            med[t] = statistics.median(ts) if ts else None
        row = [label] + [fmt(med[t]) for t in tools]
        for t in ratios:
            k, r = med.get("kpipe"), med.get(t)
            row.append("%.2fx" % (k / r) if k and r else "-")
        target = "-"
        if scen in TARGETS and TARGETS[scen][0] in ratios:
            ref, limit = TARGETS[scen]
            k, r = med.get("kpipe"), med.get(ref)
            if k and r:
                ok = k / r <= limit
                target = "kpipe <= %.1fx %s: %s" % (limit, ref, "met" if ok else "NOT met")
        row.append(target)
        print("| " + " | ".join(row) + " |")
    print()
    print("Runs per cell (min-max):")
    for t in tools:
        parts = []
        for scen, _ in SCENARIOS:
            ts = times(out, t, scen)
            if ts:
                parts.append("%s %d (%s-%s)" % (scen, len(ts), fmt(min(ts)), fmt(max(ts))))
        print("- %s: %s" % (t, ", ".join(parts)))


if __name__ == "__main__":
    main()
