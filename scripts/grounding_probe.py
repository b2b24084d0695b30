#!/usr/bin/python3
"""How fast can a small decoder learn to read a vision tower?  A presence-only grounding probe.

  /usr/bin/python3 scripts/grounding_probe.py WORLD_DIR FEATURES [--steps 500] [--lr 1e-3]
      [--layers 4] [--order image_first|question_first] [--layer -2] [--supervised-steps 600]
      [--supervised-lr 1e-3] [--stem] [--decoder torch|llama] [--init torch|hf] [--init-std 0.02]

FEATURES is one of
  oracle        the truth: per grid cell a one-hot of its shape, colour and cell (9 tokens);
                the best any tower can give, so it measures the decoder alone
  oracle64      the truth per 8x8 patch (64 tokens, as the VLM sees): the shapes and colours of
                the objects overlapping it, and the patch's position
  pixels        a ViT 64px/8 (the default tower's shape; --stem adds the convolutional stem)
                trained jointly from the pixels
  supervised    that ViT first trained alone to name the shapes present (multi-label BCE on the
                mean patch token, --supervised-steps at batch 64), then frozen; prints how well
                it names shapes
  dense         the same, but every patch names the shapes and colours overlapping it
  MODEL_DIR     a CLIP or LLaVA model directory (mmb train clip / sft): its tower, frozen,
                hidden state --layer without CLS (what the VLM's projector reads)

A causal transformer decoder (192 wide, --layers, 6 heads, pre-norm; --decoder llama: the VLM's
own, RMSNorm, RoPE, SwiGLU 512, 2 key/value heads; --init hf: every matrix outside the tower
normal(0, --init-std), as mmb's init_weights with initializer_range) with a GELU projector sees
[image tokens] "is there a <shape> ? ASSISTANT:" and predicts yes/no, 32 questions per step (half
about a present shape, half about an absent one), AdamW with one-cycle lr. It prints the
held-out accuracy on 1000 test scenes every 100 steps; a decoder that ignores the image reaches
about 0.60 (absent shapes are drawn uniformly, so rare shapes are mostly "no"). Images are
decoded once with scripts/png2raw.cpp (compiled with g++ on first use) into WORLD_DIR/*.raw.
Results and their meaning: docs/results/base-model.md, "The grounding probe".
"""
import argparse, json, os, random, subprocess, sys, time
import numpy as np, torch, torch.nn as nn

ap = argparse.ArgumentParser()
ap.add_argument('world'); ap.add_argument('features')
ap.add_argument('--steps', type=int, default=500); ap.add_argument('--lr', type=float, default=1e-3)
ap.add_argument('--layers', type=int, default=4); ap.add_argument('--order', default='image_first')
ap.add_argument('--layer', type=int, default=-2); ap.add_argument('--supervised-steps', type=int, default=600)
ap.add_argument('--supervised-lr', type=float, default=1e-3)
ap.add_argument('--stem', action='store_true', help='give the ViT the convolutional stem (mmb_stem_channels 32,64)')
ap.add_argument('--threads', type=int, default=2)
ap.add_argument('--decoder', default='torch', help='torch (pre-norm LayerNorm, learned positions) | llama (the VLM\'s: RMSNorm, RoPE, SwiGLU, 2 kv heads)')
ap.add_argument('--init', default='torch', help='torch (PyTorch defaults) | hf (normal 0.02 everywhere, as mmb and Hugging Face initialise Llama)')
ap.add_argument('--init-std', type=float, default=0.02)
a = ap.parse_args()
torch.set_num_threads(a.threads); torch.manual_seed(0); random.seed(0)
here = os.path.dirname(os.path.abspath(__file__))
SHAPES = ['circle', 'square', 'triangle', 'star', 'heart', 'cross', 'diamond', 'hexagon', 'moon', 'ring']
COLORS = ['red', 'green', 'blue', 'yellow', 'purple', 'orange', 'white', 'cyan']
scenes = [json.loads(l) for l in open(os.path.join(a.world, 'scenes.jsonl'))]
split = {s: [x for x in scenes if x['id'].startswith(s + '_')] for s in ('train', 'test')}
split['test'] = split['test'][:1000]

def pixels(name):
    raw = os.path.join(a.world, name + '.raw')
    if not os.path.exists(raw):
        tool = '/tmp/mmb_png2raw'
        if not os.path.exists(tool):
            subprocess.check_call(['g++', '-O2', os.path.join(here, 'png2raw.cpp'), '-o', tool])
        paths = '\n'.join(os.path.join(a.world, s['image']) for s in split[name]) + '\n'
        subprocess.run([tool, raw], input=paths.encode(), check=True)
    x = np.fromfile(raw, np.uint8).reshape(-1, 64, 64, 3)[:len(split[name])]
    return torch.from_numpy(x).permute(0, 3, 1, 2)

MEAN = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
STD = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)
norm = lambda x: (x.float() / 255 - MEAN) / STD
present = lambda s: {o['shape'] for o in s['objects'] if o['visible_fraction'] > 0}

def oracle(s):
    f = torch.zeros(9, 27)
    for o in s['objects']:
        if o['visible_fraction'] > 0:
            c = o['row'] * 3 + o['col']; f[c, SHAPES.index(o['shape'])] = 1; f[c, 10 + COLORS.index(o['color'])] = 1
    f[:, 18:] = torch.eye(9)
    return f

def dense(s):  # per 8x8 patch: the shapes and colours of the objects overlapping it
    t = torch.zeros(64, 18)
    for o in s['objects']:
        if o['visible_fraction'] <= 0: continue
        for p in range(64):
            cx, cy = (p % 8) * 8 + 4, (p // 8) * 8 + 4
            if ((cx - o['x']) ** 2 + (cy - o['y']) ** 2) ** 0.5 < o['radius'] + 2:
                t[p, SHAPES.index(o['shape'])] = 1; t[p, 10 + COLORS.index(o['color'])] = 1
    return t

mode = a.features if a.features in ('oracle', 'oracle64', 'pixels', 'supervised', 'dense') else 'tower'
X = {}
if mode == 'oracle':
    X = {k: torch.stack([oracle(s) for s in v]) for k, v in split.items()}
elif mode == 'oracle64':
    X = {k: torch.stack([torch.cat([dense(s), torch.eye(64)], 1) for s in v]) for k, v in split.items()}
elif mode in ('pixels', 'supervised', 'dense'):
    X = {k: pixels(k) for k in split}
else:  # a model directory's frozen tower
    sys.path.insert(0, os.path.join(here, '..', 'tests', 'reference'))
    import llava_ref, safetensors_ref
    vc = json.load(open(os.path.join(a.features, 'config.json')))['vision_config']
    W = {k: v.float() for k, v in safetensors_ref.load(os.path.join(a.features, 'model.safetensors')).items()}
    pre = 'vision_tower.vision_model.' if 'vision_tower.vision_model.embeddings.class_embedding' in W else 'vision_model.'
    with torch.no_grad():
        for k in split:
            px = pixels(k)
            X[k] = torch.cat([llava_ref.vision_hidden_states(W, pre, vc, norm(px[i:i + 500]))[a.layer][:, 1:]
                              for i in range(0, len(px), 500)])
    print('tower features', tuple(X['train'].shape), flush=True)

VOCAB = ['<pad>', 'is', 'there', 'a', '?', 'ASSISTANT:', 'yes', 'no'] + SHAPES
TID = {w: i for i, w in enumerate(VOCAB)}

class ViT(nn.Module):  # the default tower's shape: 64px/8, 128 wide, 4 layers, 4 heads; --stem: mmb's conv stem 32,64
    def __init__(s):
        super().__init__()
        s.patch = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.GELU(), nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.GELU(),
                                nn.Conv2d(64, 128, 4, stride=4)) if a.stem else nn.Conv2d(3, 128, 8, stride=8)
        s.pos = nn.Parameter(torch.randn(64, 128) * 0.02)
        s.enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(128, 4, 512, 0.0, 'gelu', batch_first=True, norm_first=True), 4)
    def forward(s, x): return s.enc(s.patch(norm(x)).flatten(2).transpose(1, 2) + s.pos)

class RMSNorm(nn.Module):
    def __init__(s, d):
        super().__init__(); s.w = nn.Parameter(torch.ones(d))
    def forward(s, x): return s.w * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)

class Llama(nn.Module):  # the VLM's decoder: RMSNorm, RoPE (theta 1e4), SwiGLU 512, 6 heads / 2 kv heads
    def __init__(s, d, layers, H=6, Hkv=2, mlp=512):
        super().__init__()
        s.H, s.Hkv, s.D = H, Hkv, d // H
        L = lambda i, o: nn.Linear(i, o, bias=False)
        s.layers = nn.ModuleList(nn.ModuleDict(dict(q=L(d, d), k=L(d, Hkv * s.D), v=L(d, Hkv * s.D), o=L(d, d),
                                                    g=L(d, mlp), u=L(d, mlp), dn=L(mlp, d))) for _ in range(layers))
        s.n1 = nn.ModuleList(RMSNorm(d) for _ in range(layers)); s.n2 = nn.ModuleList(RMSNorm(d) for _ in range(layers))
    def forward(s, x, mask=None):
        B, T, C = x.shape; D = s.D
        inv = 1.0 / (10000.0 ** (torch.arange(0, D, 2).float() / D)); ang = torch.arange(T).float()[:, None] * inv
        cos, sin = torch.cat([ang, ang], -1).cos(), torch.cat([ang, ang], -1).sin()
        rot = lambda t: torch.cat([-t[..., D // 2:], t[..., :D // 2]], -1)
        causal = torch.tril(torch.ones(T, T, dtype=torch.bool))
        for l, n1, n2 in zip(s.layers, s.n1, s.n2):
            h = n1(x)
            q = l['q'](h).view(B, T, s.H, D).transpose(1, 2); k = l['k'](h).view(B, T, s.Hkv, D).transpose(1, 2)
            v = l['v'](h).view(B, T, s.Hkv, D).transpose(1, 2)
            q, k = q * cos + rot(q) * sin, k * cos + rot(k) * sin
            k, v = k.repeat_interleave(s.H // s.Hkv, 1), v.repeat_interleave(s.H // s.Hkv, 1)
            att = ((q @ k.transpose(-1, -2)) / D ** 0.5).masked_fill(~causal, float('-inf')).softmax(-1)
            x = x + l['o']((att @ v).transpose(1, 2).reshape(B, T, C))
            h = n2(x)
            x = x + l['dn'](nn.functional.silu(l['g'](h)) * l['u'](h))
        return x

class Probe(nn.Module):
    def __init__(s, d=192):
        super().__init__()
        s.tower = ViT() if mode in ('pixels', 'supervised', 'dense') else None
        s.proj = nn.Sequential(nn.Linear(X['train'].shape[-1] if s.tower is None else 128, d), nn.GELU(), nn.Linear(d, d))
        s.emb = nn.Embedding(len(VOCAB), d); s.pos = nn.Parameter(torch.randn(128, d) * 0.02)
        if a.decoder == 'llama':
            s.dec = Llama(d, a.layers); s.norm = RMSNorm(d)
            s.out = nn.Linear(d, len(VOCAB), bias=False); s.pos = None
        else:
            s.dec = nn.TransformerEncoder(nn.TransformerEncoderLayer(d, 6, 512, 0.0, 'gelu', batch_first=True, norm_first=True), a.layers)
            s.norm = nn.LayerNorm(d); s.out = nn.Linear(d, len(VOCAB))
        if a.init == 'hf':  # normal(0, std) for every matrix and embedding outside the tower, biases 0
            for n, p in s.named_parameters():
                if n.startswith('tower'): continue
                if p.dim() >= 2: nn.init.normal_(p, 0.0, a.init_std)
                elif n.endswith('bias'): nn.init.zeros_(p)
    def forward(s, img, q):
        v = s.proj(img if s.tower is None else s.tower(img)); t = s.emb(q)
        x = torch.cat([v, t], 1) if a.order == 'image_first' else torch.cat([t[:, :5], v, t[:, 5:]], 1)
        if s.pos is not None: x = x + s.pos[:x.size(1)]
        T = x.size(1)
        return s.out(s.norm(s.dec(x, mask=torch.triu(torch.full((T, T), float('-inf')), 1))))[:, -1]

def question(s):
    p = present(s)
    if random.random() < 0.5 and p: sh, ans = random.choice(sorted(p)), 'yes'
    else: sh, ans = random.choice([x for x in SHAPES if x not in p]), 'no'
    return [TID[w] for w in ['is', 'there', 'a', sh, '?', 'ASSISTANT:']], TID[ans]

def batch(k, idx):
    q, y = zip(*[question(split[k][i]) for i in idx])
    return X[k][idx], torch.tensor(q), torch.tensor(y)

m = Probe()
if mode in ('supervised', 'dense'):  # train the tower alone first, report how well it names shapes, freeze it
    per_patch = mode == 'dense'
    Y = torch.stack([dense(s) for s in split['train']]) if per_patch else \
        torch.tensor([[float(sh in present(s)) for sh in SHAPES] for s in split['train']])
    head = nn.Linear(128, Y.shape[-1]); params = list(m.tower.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=a.supervised_lr, weight_decay=0.05)
    sch = torch.optim.lr_scheduler.OneCycleLR(opt, a.supervised_lr, total_steps=a.supervised_steps, pct_start=0.05)
    scores = lambda x: head(m.tower(x)) if per_patch else head(m.tower(x).mean(1))
    t0 = time.time()
    for _ in range(a.supervised_steps):
        idx = torch.randint(0, len(Y), (64,))
        loss = nn.functional.binary_cross_entropy_with_logits(scores(X['train'][idx]), Y[idx])
        opt.zero_grad(); loss.backward(); nn.utils.clip_grad_norm_(params, 1.0); opt.step(); sch.step()
    with torch.no_grad():
        L = torch.cat([scores(X['test'][i:i + 500]) for i in range(0, len(X['test']), 500)])
    L = (L.amax(1) if per_patch else L)[:, :10] > 0
    T = torch.tensor([[sh in present(s) for sh in SHAPES] for s in split['test']])
    print(f'tower trained {a.supervised_steps} steps to name shapes ({mode}{", stem" if a.stem else ""}): '
          f'per-shape accuracy {(L == T).float().mean():.3f} (always-majority {torch.maximum(T.float().mean(0), 1 - T.float().mean(0)).mean():.3f}), '
          f'exact shape set {(L == T).all(1).float().mean():.3f} ({time.time() - t0:.0f} s)', flush=True)
    for p in params: p.requires_grad_(False)
params = [p for p in m.parameters() if p.requires_grad]
opt = torch.optim.AdamW(params, lr=a.lr)
sch = torch.optim.lr_scheduler.OneCycleLR(opt, a.lr, total_steps=a.steps, pct_start=0.05)
random.seed(1); test = batch('test', list(range(len(split['test'])))); random.seed(0)
t0 = time.time()
for step in range(1, a.steps + 1):
    img, q, y = batch('train', [random.randrange(len(split['train'])) for _ in range(32)])
    loss = nn.functional.cross_entropy(m(img, q), y)
    opt.zero_grad(); loss.backward(); nn.utils.clip_grad_norm_(params, 1.0); opt.step(); sch.step()
    if step % 100 == 0 or step == a.steps:
        with torch.no_grad(): acc = (m(test[0], test[1]).argmax(-1) == test[2]).float().mean().item()
        print(f'{a.features} step {step} loss {loss.item():.3f} held-out accuracy {acc:.3f} ({time.time() - t0:.0f} s)', flush=True)
