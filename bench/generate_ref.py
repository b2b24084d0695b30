#!/usr/bin/python3
"""PyTorch eager side of bench/generate_bench: the same LLaVA (weights read from MODEL_DIR), with a
KV cache, timed on the same workloads. Prints one JSON object.

  generate_ref.py MODEL_DIR [threads]
"""
import json
import math
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "reference"))
import llava_ref  # noqa: E402
import safetensors_ref  # noqa: E402


class Llava:
    def __init__(self, d):
        self.cfg = json.load(open(os.path.join(d, "config.json")))
        self.W = safetensors_ref.load(os.path.join(d, "model.safetensors"))
        tc = self.cfg["text_config"]
        self.H, self.Hkv, self.C = tc["num_attention_heads"], tc["num_key_value_heads"], tc["hidden_size"]
        self.D, self.L, self.eps = self.C // self.H, tc["num_hidden_layers"], tc["rms_norm_eps"]
        inv = 1.0 / (tc["rope_theta"] ** (torch.arange(0, self.D, 2, dtype=torch.float64) / self.D))
        ang = torch.outer(torch.arange(tc["max_position_embeddings"], dtype=torch.float64), inv)
        emb = torch.cat([ang, ang], -1)
        self.cos, self.sin = emb.cos().float(), emb.sin().float()
        self.head = self.W.get("language_model.lm_head.weight", self.W["language_model.model.embed_tokens.weight"])

    def image_features(self, pix):
        vc = self.cfg["vision_config"]
        f = llava_ref.vision_hidden_states(self.W, "vision_tower.vision_model.", vc, pix)[-2][:, 1:]
        W = self.W
        return F.linear(F.gelu(F.linear(f, W["multi_modal_projector.linear_1.weight"], W["multi_modal_projector.linear_1.bias"])),
                        W["multi_modal_projector.linear_2.weight"], W["multi_modal_projector.linear_2.bias"])

    def forward(self, ids, feats, cache, pos0):
        """ids (B,T); cache: list of (k,v) or None; returns logits (B,T,V), new cache."""
        W, B, T = self.W, ids.shape[0], ids.shape[1]
        img = ids == self.cfg["image_token_index"]
        x = W["language_model.model.embed_tokens.weight"][ids.masked_fill(img, 0)]
        if feats is not None:
            x[img] = feats.reshape(-1, self.C)
        pos = torch.arange(pos0, pos0 + T)
        cos, sin = self.cos[pos][None, None], self.sin[pos][None, None]
        D = self.D

        def rot(t):
            return torch.cat([-t[..., D // 2:], t[..., :D // 2]], -1)

        S = pos0 + T
        mask = torch.arange(S)[None, :] <= (torch.arange(T)[:, None] + pos0)
        new_cache = []
        for i in range(self.L):
            p = f"language_model.model.layers.{i}."
            h = llava_ref.rms(x, W[p + "input_layernorm.weight"], self.eps)
            q = F.linear(h, W[p + "self_attn.q_proj.weight"]).view(B, T, self.H, D).transpose(1, 2)
            k = F.linear(h, W[p + "self_attn.k_proj.weight"]).view(B, T, self.Hkv, D).transpose(1, 2)
            v = F.linear(h, W[p + "self_attn.v_proj.weight"]).view(B, T, self.Hkv, D).transpose(1, 2)
            q, k = q * cos + rot(q) * sin, k * cos + rot(k) * sin
            if cache is not None:
                k, v = torch.cat([cache[i][0], k], 2), torch.cat([cache[i][1], v], 2)
            new_cache.append((k, v))
            kk, vv = k.repeat_interleave(self.H // self.Hkv, 1), v.repeat_interleave(self.H // self.Hkv, 1)
            s = (q @ kk.transpose(-1, -2)) / math.sqrt(D)
            s = s.masked_fill(~mask, float("-inf"))
            y = (s.softmax(-1) @ vv).transpose(1, 2).reshape(B, T, self.C)
            x = x + F.linear(y, W[p + "self_attn.o_proj.weight"])
            h = llava_ref.rms(x, W[p + "post_attention_layernorm.weight"], self.eps)
            x = x + F.linear(F.silu(F.linear(h, W[p + "mlp.gate_proj.weight"])) * F.linear(h, W[p + "mlp.up_proj.weight"]),
                             W[p + "mlp.down_proj.weight"])
        x = llava_ref.rms(x, W["language_model.model.norm.weight"], self.eps)
        return x @ self.head.t(), new_cache


def timeit(fn, min_time=1.0):
    fn()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < min_time or n < 2:
        fn()
        n += 1
    return (time.perf_counter() - t0) / n


def main():
    d = sys.argv[1]
    torch.set_num_threads(int(sys.argv[2]) if len(sys.argv) > 2 else 1)
    torch.set_grad_enabled(False)
    m = Llava(d)
    inp = safetensors_ref.load(os.path.join(d, "bench_inputs.safetensors"))
    ids, pix, new = inp["prompt_ids"], inp["pixel_values"], int(inp["new_tokens"].item())
    score_ids = inp["score_ids"]

    def score():
        feats = m.image_features(pix[: score_ids.shape[0]])
        logits, _ = m.forward(score_ids, feats, None, 0)
        torch.log_softmax(logits, -1)

    gen = torch.Generator().manual_seed(1)

    def pick(logits, sample):
        """Greedy, or Hugging Face's sampling: temperature 1, top-p 0.9 (sort, cumsum, scatter)."""
        if not sample:
            return logits.argmax(-1, keepdim=True)
        s, idx = logits.sort(-1, descending=True)
        p = s.softmax(-1)
        remove = (p.cumsum(-1) - p) > 0.9
        logits = logits.masked_fill(remove.scatter(-1, idx, remove), float("-inf"))
        return torch.multinomial(logits.softmax(-1), 1, generator=gen)

    def prefill(B):
        feats = m.image_features(pix[:B])
        return m.forward(ids[:B], feats, None, 0)

    def decode(B, sample):
        """new tokens from the prefilled prompt: pick, forward, as mmb's generate (the cache is
        concatenated, so the prefilled one is reused unchanged)."""
        logits0, cache0 = prefill(B)

        def run():
            logits, cache, pos = logits0, cache0, ids.shape[1]
            for _ in range(new):
                tok = pick(logits[:, -1], sample)
                logits, cache = m.forward(tok, None, cache, pos)
                pos += 1
        return run

    out = {"score": timeit(score)}
    for B in (1, 16, 64):
        out[f"prefill{B}"] = timeit(lambda: prefill(B))
        out[f"greedy{B}"] = timeit(decode(B, False))
        out[f"sample{B}"] = timeit(decode(B, True))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
