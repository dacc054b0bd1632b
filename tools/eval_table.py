#!/usr/bin/env python3
"""The protocol's tables in docs/evaluation.md, from `siamidx eval --json` files.

    tools/eval_table.py [--overall] NAME=WORKDIR/eval.json ...

Reads the documents of schema 1 and those written before it (plain counts).
Prints two Markdown tables (pair verification; attribution and open set), one
row per encoder, population and source ("all" first), in the order given.
--overall: the "all" rows only. Unmeasurable figures (null) print as "-".
"""
import json
import sys


def num(v, digits=4):
    return "-" if v is None else f"{v:.{digits}f}"


def count(v):
    return "-" if v is None else f"{v:,}"


def n(d, key):
    """A count: "n_KEY" in schema 1 (docs/json.md), "KEY" in the documents before it."""
    return d.get("n_" + key, d.get(key))


def groups(d, overall_only):
    yield "all", d["overall"]
    if not overall_only:
        by = d.get("by_source", {})  # schema 1: a list of groups naming their "source"
        groups_ = by.items() if isinstance(by, dict) else ((g["source"], g) for g in by)
        for source, g in groups_:
            yield source.split("/")[0], g


def pair_rows(name, d, overall_only):
    for source, g in groups(d, overall_only):
        for pop in ("seen", "unseen"):
            p = g[pop]["pairs"]
            a, b = p["same_source"], p["same_style"]
            yield [name, source, pop, count(n(a, "positives")), num(a["auc"]), num(b["auc"]),
                   num(a["eer"]), num(b["eer"]), num(a["tar_at_far1"]), num(b["tar_at_far1"]),
                   num(a["ece"]), num(b["ece"])]


def attribution_rows(name, d, overall_only):
    for source, g in groups(d, overall_only):
        s, u, o = g["seen"]["attribution"], g["unseen"], g["open_set"]
        yield [name, source, count(n(s, "queries")), num(s.get("top1")), num(s.get("top3")),
               num(s.get("balanced_top1")), count(n(u["attribution"], "queries")),
               num(o["auroc"]), num(o["unknown_first_indexed"], 3),
               num(o["unknown_first_unseen"], 3)]


def table(header, rows):
    print("| " + " | ".join(header) + " |")
    print("| " + " | ".join("---" if i < 3 else "---:" for i in range(len(header))) + " |")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    print()


def main(argv):
    overall_only = "--overall" in argv
    runs = []
    for arg in (a for a in argv if a != "--overall"):
        name, sep, path = arg.partition("=")
        if not sep:
            sys.exit(f"eval_table.py: expected NAME=eval.json, got {arg!r}")
        with open(path, encoding="utf-8") as f:
            runs.append((name, json.load(f)))
    if not runs:
        sys.exit(__doc__)
    table(["encoder", "source", "population", "pairs", "AUC (a)", "AUC (b)", "EER (a)",
           "EER (b)", "TAR@1%FAR (a)", "TAR@1%FAR (b)", "ECE (a)", "ECE (b)"],
          [r for name, d in runs for r in pair_rows(name, d, overall_only)])
    table(["encoder", "source", "seen queries", "top-1", "top-3", "balanced top-1",
           "unseen queries", "open-set AUROC", '"unknown" first: indexed',
           '"unknown" first: unseen'],
          [r for name, d in runs for r in attribution_rows(name, d, overall_only)])


if __name__ == "__main__":
    main(sys.argv[1:])
