#!/usr/bin/env python3
"""Independent reference for mmb's step signals and logistic fusion (tests/boundary_test.cpp).

Reads a JSON file {"steps": [{"logprobs", "entropies", "sims"}], "x": [[...]], "y": [0/1], "C": float}
and prints {"lnlp", "mte", "tsar"} per step (MMBoundary's formulas, SPEC.md §1.1, in PyTorch) and the
coefficients and intercept of an L2-penalised logistic regression of y on x (scikit-learn, lbfgs,
intercept not penalised).
"""
import json
import sys

import torch
from sklearn.linear_model import LogisticRegression


def signals(step):
    lp = torch.tensor(step["logprobs"], dtype=torch.float64)
    h = torch.tensor(step["entropies"], dtype=torch.float64)
    r = (1 - torch.tensor(step["sims"], dtype=torch.float64)).clamp(min=0)
    w = r / r.sum() if r.sum() > 0 else torch.zeros_like(r)
    return {"lnlp": torch.exp(-lp.mean()).item(), "mte": h.mean().item(), "tsar": -(w * lp).sum().item()}


if __name__ == "__main__":
    d = json.load(open(sys.argv[1]))
    out = {"steps": [signals(s) for s in d["steps"]]}
    m = LogisticRegression(C=d["C"], tol=1e-12, max_iter=10000).fit(d["x"], d["y"])
    out["coef"] = m.coef_[0].tolist()
    out["intercept"] = float(m.intercept_[0])
    print(json.dumps(out))
