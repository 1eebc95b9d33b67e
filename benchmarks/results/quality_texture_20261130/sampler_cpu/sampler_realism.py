"""Sampler variants of the shipped model (CPU, 4 cases each, seeds 0-3) against 48 + 48 real cases."""
import json, shutil, sys, tempfile
from pathlib import Path
sys.path.insert(0, "/work/main/benchmarks")
from quality_common import background_scores, read_case, MODALITIES
from medidiff.cli.evaluate_cmd import load_eval_configs
from medidiff.eval import data as evdata, realism as rl
from medidiff.data.transforms import build_transforms
import numpy as np
Q = Path("/tmp/dev/quality_scale")
exp, cfg = load_eval_configs(str(Q / "configs" / "x0_detail100_seed0.yaml"), None)
dcfg = evdata.eval_data_config(exp.data)
tr, he, lm = evdata.real_items(Q / "manifest.json", Path("/tmp/qs/data"), 0)
tf = build_transforms(dcfg, train=False, label_map=lm)
real_train = evdata.load_cases("real_train", tr[:48], tf, with_label=True, progress=False)
real_test = evdata.load_cases("real_heldout", he[:48], tf, with_label=True, progress=False)
# euler 30: the first 4 of the 8 cases generated for the memorisation audit (same seeds 0-3)
e30 = Path(tempfile.mkdtemp()) / "gen"
e30.mkdir()
for c in sorted(Path("/tmp/qs/gen_d100").glob("case_000[0-3]")):
    shutil.copytree(c, e30 / c.name)
out = {}
for name, folder in (("euler10", Path("/tmp/qs/gen_s_euler10")), ("euler30", e30), ("euler50", Path("/tmp/qs/gen_s_euler50")),
                     ("heun30", Path("/tmp/qs/gen_s_heun30"))):
    if not folder.is_dir():
        continue
    items = evdata.synthetic_items(folder, dcfg.modalities)
    syn = evdata.load_cases("synthetic", items, evdata.synthetic_transforms(dcfg, background=0.0, with_label=True), with_label=True, progress=False)
    r = rl.realism_checks(syn.images, real_train.images, real_test.images, modalities=dcfg.modalities, bands=cfg.realism_bands,
        background_tol=cfg.background_tol, spectrum_log_tol=cfg.spectrum_log_tol, histogram_factor=cfg.histogram_factor,
        histogram_abs_tol=cfg.histogram_abs_tol, diversity_sigma=cfg.diversity_sigma, diversity_min_ratio=cfg.diversity_min_ratio, seed=0)
    r.pop("spectra", None)
    bg = [background_scores(read_case(c, MODALITIES)) for c in sorted(folder.iterdir()) if c.is_dir() and c.name.startswith("case_")]
    out[name] = {"cases": len(items), "realism": r, "background": {k: float(np.mean([b[k] for b in bg])) for k in bg[0]}}
    ps = r["checks"]["power_spectrum"]["per_modality"]
    print(name, {m: round(v["log10_ratio_per_band"][-1], 2) for m, v in ps.items()},
          {m: round(v["wasserstein"], 3) for m, v in r["checks"]["intensity_histogram"]["per_modality"].items()},
          round(r["checks"]["background"]["synthetic_fraction_nonzero"], 3), {k: round(v, 5) for k, v in out[name]["background"].items()}, flush=True)
Path(sys.argv[1]).write_text(json.dumps(out, indent=1, default=float))
