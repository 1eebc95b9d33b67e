"""Does the sampler's last step set the shell? Generated cases of the shipped model at Heun 30 (output = the x0
estimate at t = 0.050) and Heun 15 (at t = 0.099), against held-out real cases: mean u per depth of each case's
brain (the realism checks' own brain-mask estimator for every set, so real and generated are measured alike),
and the realism checks (spectrum, detail coherence, background) against 16 training + the held-out cases.

    python sampler_rim.py MANIFEST DATA OUT.json NAME=GENERATED_FOLDER ...
"""
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from medidiff.config import load_config
from medidiff.data.transforms import build_transforms
from medidiff.eval import data as evdata
from medidiff.eval.realism import brain_masks, realism_checks

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rim_denoise import DEPTHS, by_depth, depth_map  # noqa: E402  the same depth bands as the denoising table

manifest, root, out_path = sys.argv[1:4]
cfg = load_config(str(Path(__file__).resolve().parents[3] / "configs" / "anatomy_2mm.yaml"))
d = evdata.eval_data_config(replace(cfg.data, manifest=manifest, root=root, cache="none", num_workers=0))
tr, he, _ = evdata.real_items(manifest, root, 0)
tf = build_transforms(d, train=False)
real = evdata.load_cases("real", evdata.seeded_subset(tr, 16, 0), tf, with_label=False, progress=False).images
held = evdata.load_cases("held", he, tf, with_label=False, progress=False).images


def profile(images):
    """(len(DEPTHS), C) mean u at each depth of each case's estimated brain (taxicab; -1 = touching outside)."""
    rows = [by_depth((img.astype(np.float64) + 1) / 2, depth_map(m))
            for img, m in zip(images.numpy(), brain_masks(images))]
    return np.mean(rows, 0)


out = {"real held-out": {"cases": len(held), "by_depth": profile(held).tolist()}}
for spec in sys.argv[4:]:
    name, folder = spec.split("=", 1)
    items = evdata.synthetic_items(folder, d.modalities)
    syn = evdata.load_cases(name, items, evdata.synthetic_transforms(d, background=0.0, with_label=False),
                            with_label=False, progress=False).images
    r = realism_checks(syn, real, held, modalities=d.modalities)
    ps, coh = r["checks"]["power_spectrum"]["per_modality"], r["checks"]["detail_coherence"]["per_modality"]
    out[name] = {"cases": len(syn), "by_depth": profile(syn).tolist(), "failed": r["failed"],
                 "spectrum_max_abs_log10": {k: v["max_abs_log10_ratio"] for k, v in ps.items()},
                 "spectrum_top_band_log10": {k: v["log10_ratio_per_band"][-1] for k, v in ps.items()},
                 "coherence_difference": {k: v["difference"] for k, v in coh.items()},
                 "background_rms": r["checks"]["background"]["synthetic_rms"],
                 "background_fraction_nonzero": r["checks"]["background"]["synthetic_fraction_nonzero"]}
Path(out_path).write_text(json.dumps({"depths": DEPTHS, "modalities": list(d.modalities), "sets": out}, indent=1,
                                     default=float))
for name, v in out.items():
    prof = np.array(v["by_depth"])
    print(name, v["cases"], "depth -1 / 1 / 2 per modality:",
          {m: [round(prof[i, k], 3) for i in (1, 2, 3)] for k, m in enumerate(d.modalities)})
    for key in ("spectrum_max_abs_log10", "spectrum_top_band_log10", "coherence_difference"):
        if key in v:
            print("  ", key, {k: round(x, 2) for k, x in v[key].items()})
    if "background_rms" in v:
        print("   background rms", round(v["background_rms"], 4), "non-zero outside", round(v["background_fraction_nonzero"], 3))
