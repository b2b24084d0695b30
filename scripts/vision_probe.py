#!/usr/bin/python3
"""Linear probe of a vision tower: is "a <shape> (or <colour>) is in the image" linearly decodable from its features?

  /usr/bin/python3 scripts/vision_probe.py MODEL_DIR WORLD_DIR [N_SCENES]

MODEL_DIR is a LLaVA (mmb train sft) or CLIP (mmb train clip) model directory; WORLD_DIR a world
(mmb world generate). For the first N scenes (default 1200) it computes the vision features of
layer -2 (class token dropped; also after the projector for a LLaVA) and the last layer's class
token, pools them (max and mean
over patches), fits a standardised logistic regression per shape on 75% and prints its held-out accuracy
next to the majority baseline, and the same on raw pixels. A tower whose accuracies sit at the
baseline does not see shapes, and no amount of decoder training will make the VLM answer POPE
from the image (docs/results/base-model.md, "The vision tower"). Uses tests/reference/llava_ref.py (an
independent implementation) and scikit-learn; Debian's python3-torch and python3-sklearn.
"""
import json, os, sys, zlib, struct, numpy as np, torch
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'tests', 'reference'))
import llava_ref, safetensors_ref
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

def png(path):
    """RGB pixels (H, W, 3) of an 8-bit non-interlaced PNG (what the world writes)."""
    b = open(path, 'rb').read(); pos = 8; idat = b''
    while pos < len(b):
        n, t = struct.unpack('>I4s', b[pos:pos+8]); d = b[pos+8:pos+8+n]; pos += 12 + n
        if t == b'IHDR': w, h, bd, ct = struct.unpack('>IIBB', d[:10])
        if t == b'IDAT': idat += d
    raw = zlib.decompress(idat); bpp = 3 if ct == 2 else 4; stride = w * bpp
    out = np.zeros((h, stride), np.int32); prev = np.zeros(stride, np.int32); p = 0
    for y in range(h):
        f = raw[p]; line = np.frombuffer(raw[p+1:p+1+stride], np.uint8).astype(np.int32); p += 1 + stride
        cur = np.zeros(stride, np.int32)
        for x in range(stride):
            a = cur[x-bpp] if x >= bpp else 0; c = prev[x-bpp] if x >= bpp else 0; up = prev[x]
            if f == 0: v = line[x]
            elif f == 1: v = line[x] + a
            elif f == 2: v = line[x] + up
            elif f == 3: v = line[x] + (a + up) // 2
            else:
                pa, pb, pc = abs(up - c), abs(a - c), abs(a + up - 2*c)
                v = line[x] + (a if pa <= pb and pa <= pc else up if pb <= pc else c)
            cur[x] = v & 255
        out[y] = cur; prev = cur
    return out.reshape(h, w, bpp)[:, :, :3]

model_dir, world = sys.argv[1], sys.argv[2]
n_scenes = int(sys.argv[3]) if len(sys.argv) > 3 else 1200
cfg = json.load(open(model_dir + '/config.json')); vc = cfg['vision_config']
W = safetensors_ref.load(model_dir + '/model.safetensors')
W = {k: v.float() for k, v in W.items()}
scenes = [json.loads(l) for l in open(world + '/scenes.jsonl')][:n_scenes]
mean = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1,3,1,1); std = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1,3,1,1)
imgs = torch.tensor(np.stack([png(world + '/' + s['image']) for s in scenes])).permute(0,3,1,2).float() / 255
px = (imgs - mean) / std
with torch.no_grad():
    pre = 'vision_tower.vision_model.' if 'vision_tower.vision_model.embeddings.class_embedding' in W else 'vision_model.'
    hs = llava_ref.vision_hidden_states(W, pre, vc, px)
    h = hs[-2][:, 1:]
    F = torch.nn.functional
    z = h if 'multi_modal_projector.linear_1.weight' not in W else F.linear(F.gelu(F.linear(h, W['multi_modal_projector.linear_1.weight'], W['multi_modal_projector.linear_1.bias'])), W['multi_modal_projector.linear_2.weight'], W['multi_modal_projector.linear_2.bias'])
feats = [('vision L-2', h), ('CLS last', hs[-1][:, :1]), ('raw pixels', px.flatten(2).transpose(1, 2))]
if z is not h:
    feats.insert(1, ('projected', z))
for name, feat in feats:
    X = torch.cat([feat.max(1).values, feat.mean(1)], 1).numpy()
    accs = []
    cut = int(0.75 * len(scenes))
    for key, shape in [('shape', 'circle'), ('shape', 'star'), ('shape', 'square'), ('shape', 'triangle'),
                       ('shape', 'heart'), ('color', 'red'), ('color', 'yellow'), ('color', 'blue')]:
        y = np.array([any(o[key] == shape and not o['occluded'] for o in s['objects']) for s in scenes])
        clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000, C=0.1)).fit(X[:cut], y[:cut])
        accs.append((shape, round(clf.score(X[cut:], y[cut:]), 3), round(max(y[cut:].mean(), 1 - y[cut:].mean()), 3)))
    print(f"{name:12s} " + "  ".join(f"{sh} {a:.3f} (baseline {b:.3f})" for sh, a, b in accs))
