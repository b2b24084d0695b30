#!/usr/bin/python3
"""The same workloads as bench/threads_bench.cpp in PyTorch eager, for side-by-side numbers.
Run: /usr/bin/python3 bench/threads_ref.py   (prints ms per iteration for torch threads 1 and 2)
OpenBLAS threads follow OPENBLAS_NUM_THREADS (set it in the environment)."""
import math
import time

import torch


class Block(torch.nn.Module):
    def __init__(self, c, h):
        super().__init__()
        self.h = h
        self.ln1, self.ln2 = torch.nn.LayerNorm(c), torch.nn.LayerNorm(c)
        self.qkv, self.proj = torch.nn.Linear(c, 3 * c), torch.nn.Linear(c, c)
        self.fc1, self.fc2 = torch.nn.Linear(c, 4 * c), torch.nn.Linear(4 * c, c)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(B, T, 3, self.h, C // self.h).permute(2, 0, 3, 1, 4)
        att = (q @ k.transpose(-2, -1)) / math.sqrt(C // self.h)
        mask = torch.ones(T, T, dtype=torch.bool).triu(1)
        att = att.masked_fill(mask, -1e9).softmax(-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, C)
        x = x + self.proj(y)
        return x + self.fc2(torch.nn.functional.gelu(self.fc1(self.ln2(x))))


def timeit(fn, min_time=0.5):
    fn()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < min_time:
        fn()
        n += 1
    return 1000 * (time.perf_counter() - t0) / n


def main():
    torch.manual_seed(0)
    net = torch.nn.Sequential(*[Block(256, 4) for _ in range(4)])
    x = torch.randn(8, 64, 256)
    a, b = torch.randn(512, 512), torch.randn(512, 512)

    def fwd():
        with torch.no_grad():
            net(x)

    def bwd():
        net.zero_grad()
        net(x).pow(2).mean().backward()

    for t in (1, 2):
        torch.set_num_threads(t)
        print(f"torch={t}: gemm512 {timeit(lambda: torch.mm(a, b)):.3f} ms  "
              f"forward {timeit(fwd):.2f} ms  backward {timeit(bwd):.2f} ms")


if __name__ == "__main__":
    main()
