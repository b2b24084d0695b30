#!/usr/bin/env python3
"""Paired bootstrap of two evaluations of the same questions (two `mmb eval --out` run dirs).

  /usr/bin/python3 scripts/paired_bootstrap.py BEFORE_RUN AFTER_RUN [--tasks mc,reasoning] [--n 10000]

Reads each run's samples.jsonl, pairs the samples by (task, group, question_id), and for every
task prints the accuracy before and after, their difference and its 95 % percentile interval
over `--n` resamples of the paired questions (seeded, so the interval is reproducible). A
difference whose interval lies below 0 is a fall beyond the bootstrap interval.
"""
import argparse
import json
import random


def load(run):
    out = {}
    with open(run + "/samples.jsonl") as f:
        for line in f:
            if not line.strip():
                continue
            s = json.loads(line)
            if "correct" not in s or s["correct"] is None:
                continue
            out[(s.get("task"), s.get("group"), s.get("question_id"))] = bool(s["correct"])
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("before")
    ap.add_argument("after")
    ap.add_argument("--tasks", default="")
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=1234)
    a = ap.parse_args()
    before, after = load(a.before), load(a.after)
    keys = sorted(set(before) & set(after), key=str)
    tasks = sorted({k[0] for k in keys}) if not a.tasks else a.tasks.split(",")
    rng = random.Random(a.seed)
    result = {}
    for task in tasks:
        pairs = [(before[k], after[k]) for k in keys if k[0] == task]
        if not pairs:
            continue
        n = len(pairs)
        acc_b = sum(b for b, _ in pairs) / n
        acc_a = sum(x for _, x in pairs) / n
        diffs = []
        for _ in range(a.n):
            s = [pairs[rng.randrange(n)] for _ in range(n)]
            diffs.append(sum(x - b for b, x in s) / n)
        diffs.sort()
        lo, hi = diffs[int(0.025 * a.n)], diffs[int(0.975 * a.n) - 1]
        result[task] = {"n": n, "before": acc_b, "after": acc_a, "diff": acc_a - acc_b, "ci95": [lo, hi]}
        print(f"{task:12s} n={n:5d}  {acc_b:.3f} -> {acc_a:.3f}  diff {acc_a - acc_b:+.3f}  95% [{lo:+.3f}, {hi:+.3f}]")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
