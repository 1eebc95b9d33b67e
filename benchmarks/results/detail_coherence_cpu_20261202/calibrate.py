"""Calibration of the detail coherence: real training vs held-out, real + noise inside the brain, blurred real, blurred + noise (local anatomy set, 16 + 16 cases)."""
import sys, json
from dataclasses import replace
import numpy as np, torch
from scipy import ndimage
sys.path.insert(0, '/work/main')
from medidiff.config import load_config
from medidiff.eval import data as evdata
from medidiff.eval.realism import brain_masks, detail_coherence, radial_power_spectrum, spectrum_ratio
from medidiff.data.transforms import build_transforms

cfg = load_config('/work/main/configs/anatomy_2mm.yaml')
d = evdata.eval_data_config(replace(cfg.data, manifest='/work/anat/manifest.json', root='/work/anat/data', cache='none', num_workers=0))
tr, he, _ = evdata.real_items('/work/anat/manifest.json', '/work/anat/data', 0)
tf = build_transforms(d, train=False)
def load(name, items): return evdata.load_cases(name, items, tf, with_label=False, progress=False).images
real = load('real', evdata.seeded_subset(tr, 16, 0)); held = load('held', evdata.seeded_subset(he, 16, 1))

coherence = detail_coherence  # the package's check (medidiff.eval.realism)

def report(name, x):
    m = brain_masks(x); co = coherence(x, m)
    sp = spectrum_ratio(radial_power_spectrum(x, m), radial_power_spectrum(real, mr))
    print(f"{name:28s} coherence {np.round(co.mean(0),3)} (case sd {np.round(co.std(0),3)})  top band log10 {np.round(sp[:, -1],2)} max {np.round(np.abs(sp).max(1),2)}")
mr = brain_masks(real)
report('real train', real); report('held out', held)
g = torch.Generator().manual_seed(0)
brain = torch.as_tensor(brain_masks(held))[:, None]
for s in (0.01, 0.02, 0.04):
    report(f'held + noise {s}', (held + 2*s*torch.randn(held.shape, generator=g)*brain).clamp(-1, 1))
def blur(x, sig): return torch.stack([torch.stack([torch.as_tensor(ndimage.gaussian_filter(c.numpy(), sig)) for c in case]) for case in x])
for sig in (0.7, 1.0):
    b = blur(held, sig)
    report(f'held blur {sig}', b)
    for s in (0.02, 0.04):
        report(f'held blur {sig} + noise {s}', (b + 2*s*torch.randn(held.shape, generator=g)*brain).clamp(-1, 1))
for m in sys.argv[1:]:
    items = evdata.synthetic_items(f'/work/s20/gen/{m}', d.modalities)
    syn = evdata.load_cases(m, items, evdata.synthetic_transforms(d, background=0.01, with_label=False), with_label=False, progress=False).images
    report(f'synthetic {m}', syn)
