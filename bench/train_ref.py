#!/usr/bin/python3
"""PyTorch side by side of bench/train_bench.cpp: the same SFT training step (forward, loss on the
35 text targets per row, backward, clip to norm 1, AdamW) of the same LLaVA on the same weights,
with the independent reference forward of tests/reference/llava_ref.py (its weights turned into
parameters).

  build/bench/train_bench --benchmark_min_time=5          # writes /tmp/mmb_train_bench_model
  /usr/bin/python3 bench/train_ref.py /tmp/mmb_train_bench_model [--policy mmb|torch] [--seconds 10]
                                      [--threads N] [--no-opt] [--dpo cached|recompute]

--dpo: instead, train_bench's DPO step (BM_DpoStep) as TRL's concatenated forward: 8 pairs, the
chosen and rejected rows in one batch of 16 with each image given for both rows, the reference's
log-probs precomputed (cached) or from a frozen copy every step (recompute), sigmoid loss β = 0.1.

--policy mmb (default): mmb's thread policy (libtorch intra-op 1, OpenBLAS = cores);
--policy torch: PyTorch's defaults (both pools = cores). Prints ms/step and samples/s.
"""
import argparse
import ctypes
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "reference"))
import llava_ref  # noqa: E402
import safetensors_ref  # noqa: E402

BATCH, SEQ, VOCAB = 16, 100, 1000


def set_openblas_threads(n):
    with open("/proc/self/maps") as f:
        libs = {line.split()[-1] for line in f if "openblas" in line.lower()}
    for lib in libs:
        try:
            ctypes.CDLL(lib).openblas_set_num_threads(n)
            return lib
        except (OSError, AttributeError):
            pass
    return None


def time_steps(step, seconds):
    """One warm-up call of step() (its loss returned), then calls for `seconds`:
    (first_loss, steps timed, seconds per step)."""
    first_loss = step()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds or n == 0:
        step()
        n += 1
    return first_loss, n, (time.perf_counter() - t0) / n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("--policy", choices=["mmb", "torch"], default="mmb")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--threads", type=int, default=0, help="cores to use (0 = all)")
    ap.add_argument("--no-opt", action="store_true", help="forward + loss + backward only")
    ap.add_argument("--dpo", choices=["cached", "recompute"], help="time the DPO step instead")
    args = ap.parse_args()
    cores = args.threads or len(os.sched_getaffinity(0))
    if args.policy == "mmb":
        torch.set_num_threads(1)
        lib = set_openblas_threads(cores)
        policy = f"torch=1 blas={cores}" + ("" if lib else " (OpenBLAS not found: blas unchanged)")
    else:
        policy = f"torch={torch.get_num_threads()} blas=default"

    weights = {k: torch.nn.Parameter(v.clone()) for k, v in safetensors_ref.load(os.path.join(args.model_dir, "model.safetensors")).items()}
    llava_ref.safetensors_ref.load = lambda path: weights  # the reference forward reads our parameters
    import json
    cfg = json.load(open(os.path.join(args.model_dir, "config.json")))
    n_img = (cfg["vision_config"]["image_size"] // cfg["vision_config"]["patch_size"]) ** 2
    n_text = SEQ - 1 - n_img
    image_token = cfg["image_token_index"]

    torch.manual_seed(1)
    text = torch.randint(5, VOCAB, (BATCH, n_text))
    ids = torch.cat([torch.ones(BATCH, 1, dtype=torch.long), torch.full((BATCH, n_img), image_token), text], 1)
    size = cfg["vision_config"]["image_size"]
    inp = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "pixel_values": torch.randn(BATCH, 3, size, size)}
    params = [p for p in weights.values()]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay}, {"params": no_decay}], lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)

    def step():
        opt.zero_grad(set_to_none=True)
        logits = llava_ref.llava_logits(args.model_dir, inp)["logits"]          # (B, T, V)
        loss = F.cross_entropy(logits[:, n_img:n_img + n_text].reshape(-1, VOCAB), text.reshape(-1))
        loss.backward()
        if not args.no_opt:
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
        return loss.item()

    if args.dpo:
        frozen = {k: v.detach().clone() for k, v in weights.items()}
        current = [weights]
        llava_ref.safetensors_ref.load = lambda path: current[0]
        pairs = 8
        torch.manual_seed(1)
        chosen = torch.randint(5, VOCAB, (pairs, n_text))
        rejected = torch.randint(5, VOCAB, (pairs, n_text))
        pixels = torch.randn(pairs, 3, size, size)
        head = torch.cat([torch.ones(2 * pairs, 1, dtype=torch.long), torch.full((2 * pairs, n_img), image_token)], 1)
        ids = torch.cat([head, torch.cat([chosen, rejected], 0)], 1)
        dinp = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "pixel_values": torch.cat([pixels, pixels], 0)}
        labels = ids[:, 1 + n_img:]

        def logps(W):
            current[0] = W
            logits = llava_ref.llava_logits(args.model_dir, dinp)["logits"][:, n_img:n_img + n_text]
            return torch.log_softmax(logits.float(), -1).gather(2, labels.unsqueeze(2)).squeeze(2).sum(1)

        with torch.no_grad():
            cached = logps(frozen)

        def step():
            opt.zero_grad(set_to_none=True)
            if args.dpo == "recompute":
                with torch.no_grad():
                    ref = logps(frozen)
            else:
                ref = cached
            lp = logps(weights)
            margin = (lp[:pairs] - ref[:pairs]) - (lp[pairs:] - ref[pairs:])
            loss = -F.logsigmoid(0.1 * margin).mean()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            return loss.item()

        first_loss, n, dt = time_steps(step, args.seconds)
        print(f"pytorch {torch.__version__} reference DPO step, reference {args.dpo} ({policy}): {1000 * dt:.1f} ms/step, "
              f"{pairs / dt:.2f} pairs/s over {n} steps; first loss {first_loss:.6f}")
        return
    first_loss, n, dt = time_steps(step, args.seconds)
    print(f"pytorch {torch.__version__} reference {'forward+backward' if args.no_opt else 'SFT step'} ({policy}): {1000 * dt:.1f} ms/step, "
          f"{BATCH / dt:.2f} samples/s over {n} steps; first loss {first_loss:.6f}")


if __name__ == "__main__":
    main()
