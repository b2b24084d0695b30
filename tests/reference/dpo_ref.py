#!/usr/bin/env python3
"""Independent reference for mmb's DPO losses and diffusion noise schedule (tests/prefs_test.cpp).

Reads a JSON file {"pc", "pr", "rc", "rr", "nc", "nr", "pcc", "rcc": [floats]} (policy/reference
chosen/rejected summed log-probs, token counts, chosen on a corrupted image) and prints, for every
loss form and option set the test names, the per-pair losses and rewards, computed the way TRL's
DPOTrainer writes them in PyTorch; plus "alphas_cumprod" of the DDPM schedule used by CSR, BPO and
the alignment study (sigmoid betas on linspace(-6, 6, 1000), 1e-5 .. 5e-3).
"""
import json
import sys

import torch
import torch.nn.functional as F


def losses(d, loss_type, beta, ls=0.0, rpo=0.0, anchor=0.0, img=0.0):
    t = {k: torch.tensor(v, dtype=torch.float64) for k, v in d.items()}
    pc, pr, rc, rr = t["pc"], t["pr"], t["rc"], t["rr"]
    if loss_type == "ipo":
        pc, pr, rc, rr = pc / t["nc"], pr / t["nr"], rc / t["nc"], rr / t["nr"]
    pi_logratios = pc - pr
    ref_logratios = rc - rr
    logits = pi_logratios - ref_logratios
    if loss_type == "sigmoid":
        out = -F.logsigmoid(beta * logits) * (1 - ls) - F.logsigmoid(-beta * logits) * ls
    elif loss_type == "robust":
        out = (-F.logsigmoid(beta * logits) * (1 - ls) + F.logsigmoid(-beta * logits) * ls) / (1 - 2 * ls)
    elif loss_type == "hinge":
        out = torch.relu(1 - beta * logits)
    else:
        out = (logits - 1 / (2 * beta)) ** 2
    if rpo:
        out = out + rpo * (-t["pc"] / t["nc"])
    if anchor:
        out = out - anchor * F.logsigmoid(beta * (t["pc"] - t["rc"]))
    if img:
        out = out - img * F.logsigmoid(beta * ((t["pc"] - t["rc"]) - (t["pcc"] - t["rcc"])))
    return {"loss": out.tolist(), "chosen_rewards": (beta * (t["pc"] - t["rc"])).tolist(),
            "rejected_rewards": (beta * (t["pr"] - t["rr"])).tolist()}


def main():
    d = json.load(open(sys.argv[1]))
    cases = {
        "sigmoid": losses(d, "sigmoid", 0.1),
        "cdpo": losses(d, "sigmoid", 0.1, ls=0.2),
        "robust": losses(d, "robust", 0.3, ls=0.1),
        "hinge": losses(d, "hinge", 0.5),
        "ipo": losses(d, "ipo", 0.1),
        "ipo_sum": losses(d, "ipo_sum", 0.1),
        "rpo_anchor_image": losses(d, "sigmoid", 0.2, rpo=0.5, anchor=1.0, img=0.7),
    }
    betas = torch.sigmoid(torch.linspace(-6, 6, 1000, dtype=torch.float64)) * (5e-3 - 1e-5) + 1e-5
    cases["alphas_cumprod"] = torch.cumprod(1 - betas, dim=0).tolist()
    print(json.dumps(cases))


if __name__ == "__main__":
    main()
