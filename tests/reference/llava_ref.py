#!/usr/bin/python3
"""Independent PyTorch implementation of the LLaVA architecture (CLIP vision tower, GELU
projector, Llama decoder) and of CLIPModel, following Hugging Face transformers' semantics.
It shares no code with mmb: it reads config.json and model.safetensors itself.

  llava_ref.py llava MODEL_DIR INPUTS.safetensors OUT.safetensors
      INPUTS: input_ids (B,T) i64, attention_mask (B,T) i64, pixel_values (n,3,H,W) f32,
              optional key_keep (B,T) bool, optional packed rows: position_ids (B,T) i64 and
              attend (B,T,T) bool (query i may see key j, besides causality and the masks).
              OUT: logits (B,T,V) f32.
  llava_ref.py clip MODEL_DIR INPUTS.safetensors OUT.safetensors
      INPUTS: input_ids, attention_mask, pixel_values. OUT: image_embeds, text_embeds, logits_per_image.
"""
import json
import math
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_ref  # noqa: E402


def act(name, x):
    return x * torch.sigmoid(1.702 * x) if name == "quick_gelu" else F.gelu(x)


def clip_layer(W, p, x, heads, eps, act_name, mask=None):
    B, T, C = x.shape
    D = C // heads
    h = F.layer_norm(x, (C,), W[p + "layer_norm1.weight"], W[p + "layer_norm1.bias"], eps)

    def proj(n):
        return F.linear(h, W[p + f"self_attn.{n}.weight"], W[p + f"self_attn.{n}.bias"]).view(B, T, heads, D).transpose(1, 2)

    q, k, v = proj("q_proj"), proj("k_proj"), proj("v_proj")
    s = (q @ k.transpose(-1, -2)) / math.sqrt(D)
    if mask is not None:
        s = s.masked_fill(~mask, float("-inf"))
    y = (s.softmax(-1) @ v).transpose(1, 2).reshape(B, T, C)
    x = x + F.linear(y, W[p + "self_attn.out_proj.weight"], W[p + "self_attn.out_proj.bias"])
    h = F.layer_norm(x, (C,), W[p + "layer_norm2.weight"], W[p + "layer_norm2.bias"], eps)
    h = act(act_name, F.linear(h, W[p + "mlp.fc1.weight"], W[p + "mlp.fc1.bias"]))
    return x + F.linear(h, W[p + "mlp.fc2.weight"], W[p + "mlp.fc2.bias"])


def vision_hidden_states(W, p, vc, pixels):
    """All hidden states of the CLIP vision encoder (HF output_hidden_states)."""
    C, P = vc["hidden_size"], vc["patch_size"]
    for i, _ in enumerate(vc.get("mmb_stem_channels") or []):  # mmb's optional conv stem
        pixels = F.gelu(F.conv2d(pixels, W[p + f"embeddings.stem.{i}.weight"], W[p + f"embeddings.stem.{i}.bias"],
                                 stride=1 if i == 0 else 2, padding=1))
        P = P if i == 0 else P // 2
    x = F.conv2d(pixels, W[p + "embeddings.patch_embedding.weight"], stride=P).flatten(2).transpose(1, 2)
    cls = W[p + "embeddings.class_embedding"].view(1, 1, C).expand(x.shape[0], 1, C)
    x = torch.cat([cls, x], 1) + W[p + "embeddings.position_embedding.weight"][None]
    eps = vc.get("layer_norm_eps", 1e-5)
    x = F.layer_norm(x, (C,), W[p + "pre_layrnorm.weight"], W[p + "pre_layrnorm.bias"], eps)
    states = [x]
    for i in range(vc["num_hidden_layers"]):
        x = clip_layer(W, p + f"encoder.layers.{i}.", x, vc["num_attention_heads"], eps, vc.get("hidden_act", "quick_gelu"))
        states.append(x)
    return states


def rms(x, w, eps):
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def llava_logits(d, inp):
    cfg = json.load(open(os.path.join(d, "config.json")))
    W = safetensors_ref.load(os.path.join(d, "model.safetensors"))
    vc, tc = cfg["vision_config"], cfg["text_config"]
    ids, am, pix = inp["input_ids"], inp["attention_mask"], inp["pixel_values"]
    keep = inp.get("key_keep")
    # vision features: hidden_states[vision_feature_layer], drop CLS, project
    feats = vision_hidden_states(W, "vision_tower.vision_model.", vc, pix)[cfg.get("vision_feature_layer", -2)]
    if cfg.get("vision_feature_select_strategy", "default") == "default":
        feats = feats[:, 1:]
    feats = F.linear(F.gelu(F.linear(feats, W["multi_modal_projector.linear_1.weight"], W["multi_modal_projector.linear_1.bias"])),
                     W["multi_modal_projector.linear_2.weight"], W["multi_modal_projector.linear_2.bias"])
    # merge: image-token slots take the features in row-major order
    E = W["language_model.model.embed_tokens.weight"]
    img = ids == cfg["image_token_index"]
    x = E[ids.masked_fill(img, 0)].clone()
    x[img] = feats.reshape(-1, x.shape[-1])
    B, T, C = x.shape
    H, Hkv = tc["num_attention_heads"], tc.get("num_key_value_heads", tc["num_attention_heads"])
    D = C // H
    eps = tc.get("rms_norm_eps", 1e-6)
    pos = inp["position_ids"] if "position_ids" in inp else (am.cumsum(1) - 1).clamp(min=0)
    inv = 1.0 / (tc.get("rope_theta", 10000.0) ** (torch.arange(0, D, 2, dtype=torch.float64) / D))
    ang = pos[..., None].double() * inv
    cos, sin = torch.cat([ang, ang], -1).cos().float()[:, None], torch.cat([ang, ang], -1).sin().float()[:, None]

    def rot(t):
        return torch.cat([-t[..., D // 2:], t[..., :D // 2]], -1)

    key_ok = am.bool() if keep is None else am.bool() & keep.bool()
    mask = torch.tril(torch.ones(T, T, dtype=torch.bool))[None, None] & key_ok[:, None, None, :]
    if "attend" in inp:
        mask = mask & inp["attend"].bool()[:, None]
    for i in range(tc["num_hidden_layers"]):
        p = f"language_model.model.layers.{i}."
        h = rms(x, W[p + "input_layernorm.weight"], eps)
        q = F.linear(h, W[p + "self_attn.q_proj.weight"]).view(B, T, H, D).transpose(1, 2)
        k = F.linear(h, W[p + "self_attn.k_proj.weight"]).view(B, T, Hkv, D).transpose(1, 2)
        v = F.linear(h, W[p + "self_attn.v_proj.weight"]).view(B, T, Hkv, D).transpose(1, 2)
        q, k = q * cos + rot(q) * sin, k * cos + rot(k) * sin
        k, v = k.repeat_interleave(H // Hkv, 1), v.repeat_interleave(H // Hkv, 1)
        s = (q @ k.transpose(-1, -2)) / math.sqrt(D)
        s = s.masked_fill(~mask, torch.finfo(s.dtype).min)
        y = (s.softmax(-1) @ v).transpose(1, 2).reshape(B, T, C)
        x = x + F.linear(y, W[p + "self_attn.o_proj.weight"])
        h = rms(x, W[p + "post_attention_layernorm.weight"], eps)
        x = x + F.linear(F.silu(F.linear(h, W[p + "mlp.gate_proj.weight"])) * F.linear(h, W[p + "mlp.up_proj.weight"]),
                         W[p + "mlp.down_proj.weight"])
    x = rms(x, W["language_model.model.norm.weight"], eps)
    head = W.get("language_model.lm_head.weight", E)
    return {"logits": x @ head.t()}


def clip_outputs(d, inp):
    cfg = json.load(open(os.path.join(d, "config.json")))
    W = safetensors_ref.load(os.path.join(d, "model.safetensors"))
    vc, tc = cfg["vision_config"], cfg["text_config"]
    v = vision_hidden_states(W, "vision_model.", vc, inp["pixel_values"])[-1][:, 0]
    v = F.layer_norm(v, (vc["hidden_size"],), W["vision_model.post_layernorm.weight"], W["vision_model.post_layernorm.bias"],
                     vc.get("layer_norm_eps", 1e-5))
    img = v @ W["visual_projection.weight"].t()
    ids, am = inp["input_ids"], inp["attention_mask"]
    B, T = ids.shape
    x = W["text_model.embeddings.token_embedding.weight"][ids] + W["text_model.embeddings.position_embedding.weight"][:T][None]
    mask = torch.tril(torch.ones(T, T, dtype=torch.bool))[None, None] & am.bool()[:, None, None, :]
    eps = tc.get("layer_norm_eps", 1e-5)
    for i in range(tc["num_hidden_layers"]):
        x = clip_layer(W, f"text_model.encoder.layers.{i}.", x, tc["num_attention_heads"], eps,
                       tc.get("hidden_act", "quick_gelu"), mask)
    x = F.layer_norm(x, (tc["hidden_size"],), W["text_model.final_layer_norm.weight"], W["text_model.final_layer_norm.bias"], eps)
    eos = tc.get("eos_token_id", 2)
    if tc.get("mmb_pooling", "hf") == "hf" and eos == 2:
        idx = ids.argmax(-1)
    else:
        idx = (ids == eos).int().argmax(-1)
    m = am.to(x.dtype)[:, :, None]
    mean = (x * m).sum(1) / m.sum(1)  # mean over real tokens of the final states (no projection)
    mean = mean / mean.norm(dim=-1, keepdim=True)
    txt = x[torch.arange(B), idx] @ W["text_projection.weight"].t()
    img, txt = img / img.norm(dim=-1, keepdim=True), txt / txt.norm(dim=-1, keepdim=True)
    return {"image_embeds": img, "text_embeds": txt, "text_mean_embeds": mean, "logits_per_image": W["logit_scale"].exp() * img @ txt.t()}


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    kind, model_dir, inputs, out = sys.argv[1:5]
    fn = {"llava": llava_logits, "clip": clip_outputs}[kind]
    safetensors_ref.save(out, {k: v.contiguous() for k, v in fn(model_dir, safetensors_ref.load(inputs)).items()})
