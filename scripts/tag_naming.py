#!/usr/bin/python3
"""How well a CLIP tower trained with the tag loss names the shapes in an image.

  /usr/bin/python3 scripts/tag_naming.py CHECKPOINT WORLD_DIR [--layer -2] [--threads 2]

CHECKPOINT is a checkpoint directory of `mmb train clip --tag-loss W` (checkpoints/step-N: its
model.safetensors still holds the tag head `mmb_tag_head`, which the saved model drops). The tower
runs on the first 1000 test scenes of WORLD_DIR (decoded once into WORLD_DIR/test.raw, as
scripts/grounding_probe.py does); the head scores every patch of layer --layer (the run's
--tag-layer) and the image's logit for a shape is the max or the mean over patches. A shape is
named when its logit is > 0. Prints, for both poolings, the accuracy over the 10 shapes (the
majority baseline of the default world is 0.731), the share of scenes whose whole shape set is
right, and the accuracy per shape. Results: docs/results/base-model.md, "The vision tower".
"""
import argparse, json, os, subprocess, sys
import numpy as np, torch

ap = argparse.ArgumentParser()
ap.add_argument('checkpoint'); ap.add_argument('world')
ap.add_argument('--layer', type=int, default=-2); ap.add_argument('--threads', type=int, default=2)
a = ap.parse_args()
torch.set_num_threads(a.threads)
here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, '..', 'tests', 'reference'))
import llava_ref, safetensors_ref  # noqa: E402

SHAPES = ['circle', 'square', 'triangle', 'star', 'heart', 'cross', 'diamond', 'hexagon', 'moon', 'ring']
scenes = [json.loads(l) for l in open(os.path.join(a.world, 'scenes.jsonl'))]
test = [s for s in scenes if s['id'].startswith('test_')][:1000]
raw = os.path.join(a.world, 'test.raw')
if not os.path.exists(raw):
    tool = '/tmp/mmb_png2raw'
    if not os.path.exists(tool):
        subprocess.check_call(['g++', '-O2', os.path.join(here, 'png2raw.cpp'), '-o', tool])
    paths = '\n'.join(os.path.join(a.world, s['image']) for s in test) + '\n'
    subprocess.run([tool, raw], input=paths.encode(), check=True)
x = torch.from_numpy(np.fromfile(raw, np.uint8).reshape(-1, 64, 64, 3)[:len(test)]).permute(0, 3, 1, 2)
MEAN = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
STD = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)
x = (x.float() / 255 - MEAN) / STD
vc = json.load(open(os.path.join(a.checkpoint, 'config.json')))['vision_config']
W = {k: v.float() for k, v in safetensors_ref.load(os.path.join(a.checkpoint, 'model.safetensors')).items()}
if 'mmb_tag_head.weight' not in W:
    sys.exit(f'{a.checkpoint}: no mmb_tag_head in model.safetensors (a checkpoint of a run with --tag-loss is needed)')
with torch.no_grad():
    h = torch.cat([llava_ref.vision_hidden_states(W, 'vision_model.', vc, x[i:i + 250])[a.layer][:, 1:]
                   for i in range(0, len(x), 250)])
    S = h @ W['mmb_tag_head.weight'].T + W['mmb_tag_head.bias']  # (N, patches, tags); shapes first
T = torch.tensor([[sh in {o['shape'] for o in s['objects'] if o['visible_fraction'] > 0} for sh in SHAPES] for s in test])
for pool, L in (('max', S.amax(1)[:, :10] > 0), ('mean', S.mean(1)[:, :10] > 0)):
    right = L == T
    print(f'{pool}-pooled: per-shape accuracy {right.float().mean():.3f}, whole shape set {right.all(1).float().mean():.3f}, '
          f'per shape {dict(zip(SHAPES, [round(v, 2) for v in right.float().mean(0).tolist()]))}')
