#!/usr/bin/python3
"""PyTorch side by side of bench/train_bench.cpp's BM_ClipStep: the same CLIP training step
(symmetric InfoNCE over a batch of 64 images and their 32-token captions, backward, clip to norm
1, AdamW) of the same CLIP on the same weights, with the independent reference forward of
tests/reference/llava_ref.py (its weights turned into parameters).

  build/bench/train_bench --benchmark_filter=Clip --benchmark_min_time=5   # writes /tmp/mmb_clip_bench_model
  /usr/bin/python3 bench/clip_ref.py /tmp/mmb_clip_bench_model [--threads N] [--seconds 10]

PyTorch at mmb's thread policy (docs/performance.md: with OpenBLAS's OpenMP build libtorch and
OpenBLAS share the cores). Prints ms/step and images/s.
"""
import argparse
import os
import sys

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "reference"))
sys.path.insert(0, HERE)
import llava_ref  # noqa: E402
import safetensors_ref  # noqa: E402
from train_ref import set_openblas_threads, time_steps  # noqa: E402

BATCH, CAPTION, VOCAB = 64, 32, 600


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--threads", type=int, default=0, help="cores to use (0 = all)")
    args = ap.parse_args()
    cores = args.threads or len(os.sched_getaffinity(0))
    torch.set_num_threads(1)
    lib = set_openblas_threads(cores)
    policy = f"torch=1 blas={cores}" + ("" if lib else " (OpenBLAS not found)")

    weights = {k: torch.nn.Parameter(v.clone()) for k, v in safetensors_ref.load(os.path.join(args.model_dir, "model.safetensors")).items()}
    llava_ref.safetensors_ref.load = lambda path: weights
    torch.manual_seed(1)
    pixels = torch.randn(BATCH, 3, 64, 64)
    ids = torch.cat([torch.ones(BATCH, 1, dtype=torch.long), torch.randint(5, VOCAB, (BATCH, CAPTION - 2)),
                     torch.full((BATCH, 1), 2, dtype=torch.long)], 1)
    inp = {"pixel_values": pixels, "input_ids": ids, "attention_mask": torch.ones_like(ids)}
    params = list(weights.values())
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay}, {"params": no_decay}], lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    labels = torch.arange(BATCH)

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.no_grad():
            weights["logit_scale"].clamp_(0.0, float(torch.log(torch.tensor(100.0))))
        logits = llava_ref.clip_outputs(args.model_dir, inp)["logits_per_image"]  # (B, B)
        loss = 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        return loss.item()

    first_loss, n, dt = time_steps(step, args.seconds)
    print(f"pytorch {torch.__version__} reference CLIP step ({policy}): {1000 * dt:.1f} ms/step, "
          f"{BATCH / dt:.1f} images/s over {n} steps; first loss {first_loss:.6f}")


if __name__ == "__main__":
    main()
