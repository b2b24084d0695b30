#!/usr/bin/env python3
"""Independent reference for mmb's temperature scaling (tests/calibration_test.cpp).

Reads a JSON file {"logits": [[...], ...], "mask": [[0|1, ...], ...]} and prints
{"nll_at_1", "temperature", "nll"}: the mean NLL of the true columns at T = 1, and the T that
minimises it, found by PyTorch's LBFGS on log T (the way temperature scaling is usually written
in Python, Guo et al. 2017), started from T = 1.5, in float64.
"""
import json
import sys

import torch


def nll(logits, mask, log_t):
    z = logits / torch.exp(log_t)
    truth = z.masked_fill(~mask, float("-inf"))
    return (torch.logsumexp(z, 1) - torch.logsumexp(truth, 1)).mean()


def main():
    data = json.load(open(sys.argv[1]))
    logits = torch.tensor(data["logits"], dtype=torch.float64)
    mask = torch.tensor(data["mask"], dtype=torch.bool)
    log_t = torch.tensor(float(torch.log(torch.tensor(1.5))), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.5, max_iter=500, tolerance_grad=1e-12, tolerance_change=1e-15,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = nll(logits, mask, log_t)
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        print(json.dumps({"nll_at_1": float(nll(logits, mask, torch.tensor(0.0, dtype=torch.float64))),
                          "temperature": float(torch.exp(log_t)), "nll": float(nll(logits, mask, log_t))}))


if __name__ == "__main__":
    main()
