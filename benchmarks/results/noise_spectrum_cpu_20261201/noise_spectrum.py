"""Throwaway: is the generated cases' missing top-band power the data's noise? Gaussian noise of std s
(u units: [0, 1] intensity) added inside the brain of the shipped model's 4 generated cases (Heun 30,
seeds 0-3, haze_cpu_20261201's gen_clip), spectrum per band against 16 real held-out cases."""
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, "/work/main/benchmarks")
from quality_common import _RealCases  # noqa: E402

from medidiff.eval.realism import brain_masks, radial_power_spectrum, spectrum_ratio  # noqa: E402

real = _RealCases(Path("/work/main/configs/anatomy_2mm.yaml"), Path("/work/anat/manifest.json"), Path("/work/anat/data"), 16)
mods = list(real.dcfg.modalities)
r = real.heldout.images.float()
p_real = radial_power_spectrum(r, brain_masks(r))
syn = real.synthetic(Path(sys.argv[1] if len(sys.argv) > 1 else "/work/s17/haze/gen_clip")).images.float()
m_syn = brain_masks(syn)
g = torch.Generator().manual_seed(0)
print(f"{len(syn)} generated vs {len(r)} real held-out; log10(synthetic / real) per band, low to high (goal +-0.30)")
for s in (0.0, 0.005, 0.01, 0.015, 0.02):
    noise = torch.randn(syn.shape, generator=g) * (2 * s)  # [-1, 1] units
    x = (syn + noise * torch.from_numpy(m_syn)[:, None]).clamp(-1, 1)
    ratio = spectrum_ratio(radial_power_spectrum(x, m_syn), p_real)
    print(f"s {s:.3f}: " + " | ".join(f"{mod} " + " ".join(f"{v:+.2f}" for v in ratio[c]) for c, mod in enumerate(mods)),
          flush=True)
