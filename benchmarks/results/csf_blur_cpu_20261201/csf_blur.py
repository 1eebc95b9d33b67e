"""Throwaway: is the generated cases' excess CSF what smoothness does to the tissue segmenter? Real
held-out cases blurred by a Gaussian of sigma voxels, through the evaluation's tissue segmenter
(.nets/tissue_net, trained on the 1536-case set), beside their spectrum's top-band ratio to the unblurred."""
import sys
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

sys.path.insert(0, "/work/main/benchmarks")
from quality_common import _RealCases  # noqa: E402

from medidiff.eval import tissue as ts  # noqa: E402
from medidiff.eval.realism import brain_masks, radial_power_spectrum, spectrum_ratio  # noqa: E402
from medidiff.eval.segmentation import load_segmenter  # noqa: E402

N = int(sys.argv[1]) if len(sys.argv) > 1 else 16
real = _RealCases(Path("/work/main/configs/anatomy_2mm.yaml"), Path("/work/anat/manifest.json"), Path("/work/anat/data"), N)
imgs = real.heldout.images.float()
mods = list(real.dcfg.modalities)
model, _ = load_segmenter("/work/main/.nets/tissue_net", kind=ts.TISSUE_NET_KIND, expect={}, what="tissue", option="-")
masks = brain_masks(imgs)
p_real = radial_power_spectrum(imgs, masks)
torch.set_num_threads(2)
print(f"{len(imgs)} held-out cases; synthetic (session 17 GPU run): CSF 0.074, top band log10 t1n -0.91 t1c -0.52 t2w -0.21 t2f -0.51")
for sigma in (0.0, 0.4, 0.6, 0.8, 1.0):
    x = imgs.numpy().copy()
    if sigma:
        for i in range(len(x)):
            for c in range(x.shape[1]):
                x[i, c] = ndimage.gaussian_filter(x[i, c], sigma)
    xt = torch.from_numpy(x).clamp(-1, 1)
    maps = ts.predict_tissue(model, xt)
    m = ts.tissue_measures(xt, maps, mods)
    top = spectrum_ratio(radial_power_spectrum(xt, masks), p_real)[:, -1]
    print(f"sigma {sigma:.1f}: CSF {np.mean(m['fraction_CSF']):.4f} GM {np.mean(m['fraction_GM']):.4f} "
          f"WM {np.mean(m['fraction_WM']):.4f} | contrast " + " ".join(f"{k[-3:]} {np.nanmean(v):+.3f}" for k, v in m.items()
                                                                    if k.startswith("wm_gm")) +
          " | top band log10 " + " ".join(f"{mod} {t:+.2f}" for mod, t in zip(mods, top)), flush=True)
