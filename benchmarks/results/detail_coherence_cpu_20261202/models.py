"""Realism checks (detail coherence among them) of CPU-generated cases of three anatomy-2mm models
against the local anatomy set (16 training + 16 held-out cases)."""
import sys, json
from dataclasses import replace
import numpy as np
sys.path.insert(0, '/work/main')
from medidiff.config import load_config
from medidiff.eval import data as evdata
from medidiff.eval.realism import realism_checks
from medidiff.data.transforms import build_transforms

cfg = load_config('/work/main/configs/anatomy_2mm.yaml')
d = evdata.eval_data_config(replace(cfg.data, manifest='/work/anat/manifest.json', root='/work/anat/data', cache='none', num_workers=0))
tr, he, _ = evdata.real_items('/work/anat/manifest.json', '/work/anat/data', 0)
tf = build_transforms(d, train=False)
real = evdata.load_cases('real', evdata.seeded_subset(tr, 16, 0), tf, with_label=False, progress=False).images
held = evdata.load_cases('held', evdata.seeded_subset(he, 16, 1), tf, with_label=False, progress=False).images
out = {}
for m in sys.argv[1:]:
    items = evdata.synthetic_items(f'/work/s20/gen/{m}', d.modalities)
    syn = evdata.load_cases(m, items, evdata.synthetic_transforms(d, background=0.0, with_label=False), with_label=False, progress=False).images
    r = realism_checks(syn, real, held, modalities=d.modalities)
    coh = r['checks']['detail_coherence']['per_modality']
    ps = r['checks']['power_spectrum']['per_modality']
    out[m] = {"cases": len(syn), "failed": r["failed"], "detail_coherence": coh,
              "spectrum_max_abs_log10": {k: v["max_abs_log10_ratio"] for k, v in ps.items()},
              "spectrum_top_band_log10": {k: v["log10_ratio_per_band"][-1] for k, v in ps.items()}}
    print(m, len(syn), r['failed'])
    for k, v in coh.items():
        print(f"  {k}: coherence {v['synthetic']:.3f} real {v['real']:.3f} diff {v['difference']:+.3f} floor {v['floor']:.3f} {v['reads_as']} {'pass' if v['pass'] else 'FAIL'}; spectrum max {ps[k]['max_abs_log10_ratio']:.2f} top {ps[k]['log10_ratio_per_band'][-1]:+.2f}")
json.dump(out, open('/work/s20/grain/models.json', 'w'), indent=2)
