#!/usr/bin/env python3
"""Independent reference values for mmb's metrics (tests/metrics_test.cpp).

Reads a JSON file {"confidence": [...], "correct": [...], "pope_pred": [1|0|-1, ...],
"pope_label": [bool, ...], "bins": n} and prints one JSON object of reference values:
scikit-learn for AUROC, average precision, Brier, log-loss, precision / recall / F1 and accuracy;
numpy re-implementations (written from the definitions in docs/metrics.md, not from the C++) for
ECE (equal-width and equal-mass), MCE and AURC.
"""
import json
import sys

import numpy as np
from sklearn.metrics import (accuracy_score, average_precision_score, brier_score_loss, f1_score,
                             log_loss, precision_score, recall_score, roc_auc_score)


def binned(conf, correct, bins, equal_mass):
    n = len(conf)
    if equal_mass:
        order = np.argsort(conf, kind="stable")
        groups = np.array_split(order, bins)
    else:
        idx = np.minimum(np.floor(conf * bins).astype(int), bins - 1)
        groups = [np.nonzero(idx == b)[0] for b in range(bins)]
    ece, mce = 0.0, 0.0
    for g in groups:
        if len(g) == 0:
            continue
        gap = abs(correct[g].mean() - conf[g].mean())
        ece += len(g) / n * gap
        mce = max(mce, gap)
    return ece, mce


def aurc(conf, correct):
    # Step integral over distinct thresholds (descending): sum (cov_j - cov_{j-1}) * risk_j.
    n = len(conf)
    total, prev_cov = 0.0, 0.0
    for t in sorted(set(conf.tolist()), reverse=True):
        kept = conf >= t
        cov = kept.sum() / n
        risk = 1.0 - correct[kept].mean()
        total += (cov - prev_cov) * risk
        prev_cov = cov
    c = int(correct.sum())
    best = sum(max(0, k - c) / k for k in range(1, n + 1)) / n
    return total, total - best


def main():
    data = json.load(open(sys.argv[1]))
    conf = np.asarray(data["confidence"], dtype=np.float64)
    correct = np.asarray(data["correct"], dtype=bool)
    bins = int(data["bins"])
    y = correct.astype(int)
    ece, mce = binned(conf, correct.astype(float), bins, False)
    ece_mass, _ = binned(conf, correct.astype(float), bins, True)
    a, e = aurc(conf, correct)
    pred = np.asarray(data["pope_pred"])
    label = np.asarray(data["pope_label"], dtype=int)
    said_yes = (pred == 1).astype(int)  # unparsed answers count as "no"
    out = {
        "auroc": roc_auc_score(y, conf),
        "auprc": average_precision_score(y, conf),
        "brier": brier_score_loss(y, conf),
        "nll": log_loss(y, conf, labels=[0, 1]),
        "ece": ece,
        "mce": mce,
        "ece_equal_mass": ece_mass,
        "aurc": a,
        "e_aurc": e,
        "pope_precision": precision_score(label, said_yes, zero_division=0),
        "pope_recall": recall_score(label, said_yes, zero_division=0),
        "pope_f1": f1_score(label, said_yes, zero_division=0),
        # Accuracy: an unparsed answer (-1) matches neither label.
        "pope_accuracy": accuracy_score(label, np.where(pred == -1, 2, pred)),
        "pope_yes_ratio": float(said_yes.mean()),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
