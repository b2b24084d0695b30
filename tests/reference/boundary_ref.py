#!/usr/bin/env python3
"""Independent reference for mmb's step signals and logistic fusion (tests/boundary_test.cpp).

Reads a JSON file {"steps": [{"logprobs", "entropies", "sims"}], "x": [[...]], "y": [0/1], "C": float}
(and optionally "grpo": {"logp", "old", "ref", "mask", "adv", "eps", "beta"}) and prints
{"lnlp", "mte", "tsar"} per step (MMBoundary's formulas, SPEC.md §1.1, in PyTorch) and the
coefficients and intercept of an L2-penalised logistic regression of y on x (scikit-learn, lbfgs,
intercept not penalised), and the GRPO loss (DeepSeekMath's clipped surrogate with the k3 KL,
each sequence's token mean, then the batch mean).
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
    if "grpo" in d:
        g = {k: torch.tensor(v, dtype=torch.float64) if isinstance(v, list) else v for k, v in d["grpo"].items()}
        ratio = torch.exp(g["logp"] - g["old"])
        adv = g["adv"][:, None]
        surrogate = torch.minimum(ratio * adv, torch.clamp(ratio, 1 - g["eps"], 1 + g["eps"]) * adv)
        kl = torch.exp(g["ref"] - g["logp"]) - (g["ref"] - g["logp"]) - 1
        per_token = -(surrogate - g["beta"] * kl)
        out["grpo_loss"] = ((per_token * g["mask"]).sum(1) / g["mask"].sum(1)).mean().item()
    print(json.dumps(out))
