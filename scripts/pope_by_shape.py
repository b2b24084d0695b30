#!/usr/bin/python3
"""POPE accuracy per asked shape, beside how often the SFT data answers that shape "yes".

  /usr/bin/python3 scripts/pope_by_shape.py EVAL_DIR WORLD_DIR [--group pope/random]

EVAL_DIR is an `mmb eval --suite pope --out EVAL_DIR` run (its predictions.jsonl); WORLD_DIR the
world it was evaluated on. For every shape it prints
  yes-recall     share of the questions about a present shape answered "yes"
  no-recall      share of the questions about an absent shape answered "no"
  SFT yes-rate   share of "Yes." among the SFT presence turns (train/llava.json) naming that shape
                 without a colour: the answer a model can learn from the question alone
A model that reads the question and not the image has yes-recall high and no-recall low on the
shapes with a high SFT yes-rate, and the reverse on the low ones (docs/world.md, balanced
presence negatives).
"""
import argparse
import collections
import json
import re

SHAPES = "circle square triangle star hexagon diamond heart cross moon ring".split()
COLOURS = "red green blue yellow orange purple white cyan".split()


def asked_shape(question):
    words = re.findall(r"[a-z]+", question.lower())
    found = [w for w in words if w in SHAPES]
    return found[-1] if found else None


def sft_yes_rate(world):
    counts = collections.defaultdict(lambda: [0, 0])  # shape -> [no, yes]
    with open(world + "/train/llava.json") as f:
        data = json.load(f)
    for sample in data:
        turns = sample["conversations"]
        for q, a in zip(turns[0::2], turns[1::2]):
            answer = a["value"].strip()
            if answer not in ("Yes.", "No."):
                continue
            text = q["value"].replace("<image>", "").strip()
            if not re.match(r"(Is there|Do you see|Does the image contain|Can you see) an? ", text):
                continue
            if any(" " + c + " " in " " + text.lower() + " " for c in COLOURS):
                continue
            shape = asked_shape(text)
            if shape:
                counts[shape][answer == "Yes."] += 1
    return counts


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("eval_dir")
    ap.add_argument("world")
    ap.add_argument("--group", default="pope/random")
    args = ap.parse_args()
    stats = collections.defaultdict(lambda: [[0, 0], [0, 0]])  # shape -> [label][correct, n]
    with open(args.eval_dir + "/predictions.jsonl") as f:
        for line in f:
            p = json.loads(line)
            if p.get("group") != args.group:
                continue
            shape = asked_shape(p["question"])
            cell = stats[shape][p["label"] == "yes"]
            cell[0] += bool(p["correct"])
            cell[1] += 1
    if not stats:
        raise SystemExit(f"no prediction of group {args.group} in {args.eval_dir}/predictions.jsonl")
    sft = sft_yes_rate(args.world)
    print(f"{'shape':9s} {'yes-recall':>12s} {'no-recall':>12s} {'SFT yes-rate':>13s}")
    for shape in SHAPES:
        if shape not in stats:
            continue
        (nc, nn), (yc, yn) = stats[shape]
        no, yes = sft[shape]
        rate = f"{yes / (yes + no):.2f}" if yes + no else "-"
        print(f"{shape:9s} {yc / max(yn, 1):7.3f} ({yn:4d}) {nc / max(nn, 1):7.3f} ({nn:4d}) {rate:>13s}")


if __name__ == "__main__":
    main()
