#!/usr/bin/env python3
"""Checks that src/ folders depend on each other one way (DESIGN.md's layering).

A header include/mmb/X.h belongs to the folder of src/*/X.cpp (or of the sources that define what
it declares when no X.cpp exists; see OWNER). Prints the folder graph and exits 1 on an include
that runs against ORDER or on a cycle.
"""
import glob
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Lower layers first; a folder may include headers of its own layer and of those before it.
ORDER = ["io", "common", "world", "text", "model", "generate", "confidence", "eval", "report", "boundary", "prefs",
         "train", "align"]
# Headers without a same-named source file: the folder that implements them.
OWNER = {"error": "io", "strings": "io", "calibrate": "eval", "world_tasks": "world",
         "model_config": "model", "verifier": "world", "elicitation": "eval",
         "sentences": "text", "generate": "generate", "vlm": "generate", "model": "model",
         "recipe": "train", "report": "report", "world": "world",
         "calibration": "eval", "train": "train", "dpo": "train", "prefs": "prefs",
         "confidence": "confidence", "clip_scorer": "model", "pair_builders": "prefs"}


def header_folder():
    owner = {}
    for src in glob.glob(os.path.join(ROOT, "src", "*", "*.cpp")):
        folder = os.path.basename(os.path.dirname(src))
        owner.setdefault(os.path.splitext(os.path.basename(src))[0], folder)
    owner.update(OWNER)
    return owner


def main():
    owner = header_folder()
    rank = {f: i for i, f in enumerate(ORDER)}
    bad, edges = [], set()
    files = glob.glob(os.path.join(ROOT, "src", "*", "*.cpp")) + glob.glob(os.path.join(ROOT, "src", "*", "*.h"))
    headers = glob.glob(os.path.join(ROOT, "include", "mmb", "*.h"))
    for path in sorted(files + headers):
        if "/include/" in path:
            name = os.path.splitext(os.path.basename(path))[0]
            folder = owner.get(name)
            if folder is None:
                bad.append(f"{os.path.relpath(path, ROOT)}: no folder owns this header (add it to OWNER)")
                continue
        else:
            folder = os.path.basename(os.path.dirname(path))
        for inc in re.findall(r'#include "mmb/([a-z_]+)\.h"', open(path).read()):
            dep = owner.get(inc)
            if dep is None or dep == folder:
                continue
            edges.add((folder, dep))
            if rank.get(dep, -1) > rank.get(folder, -1):
                bad.append(f"{os.path.relpath(path, ROOT)}: {folder} includes mmb/{inc}.h of {dep} (a later layer)")
    for a, b in sorted(edges):
        print(f"{a} -> {b}")
    for line in bad:
        print("error:", line)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
