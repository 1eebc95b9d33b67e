import json, sys
from pathlib import Path
from medidiff.cli.evaluate_cmd import load_eval_configs
from medidiff.eval import data as evdata, realism as rl
from medidiff.data.transforms import build_transforms
Q = Path("/tmp/job/quality_scale")
runs = ["x0_seed0", "x0_detail10_seed0", "x0_detail100_seed0", "x0_stats_on_seed0"]
exp, cfg = load_eval_configs(str(Q / "configs" / "x0_seed0.yaml"), None)
dcfg = evdata.eval_data_config(exp.data)
train_items, held_items, label_map = evdata.real_items(Q / "manifest.json", Q / "data", 0)
real_tf = build_transforms(dcfg, train=False, label_map=label_map)
real_train = evdata.load_cases("real_train", train_items[:48], real_tf, with_label=True, progress=False)
real_test = evdata.load_cases("real_heldout", held_items[:48], real_tf, with_label=True, progress=False)
out = {}
for run in runs:
    items = evdata.synthetic_items(Q / "generated" / run, dcfg.modalities)
    syn = evdata.load_cases("synthetic", items, evdata.synthetic_transforms(dcfg, background=cfg.synthetic_background, with_label=True), with_label=True, progress=False)
    r = rl.realism_checks(syn.images, real_train.images, real_test.images, modalities=dcfg.modalities,
        bands=cfg.realism_bands, background_tol=cfg.background_tol, spectrum_log_tol=cfg.spectrum_log_tol,
        histogram_factor=cfg.histogram_factor, histogram_abs_tol=cfg.histogram_abs_tol,
        diversity_sigma=cfg.diversity_sigma, diversity_min_ratio=cfg.diversity_min_ratio, seed=0)
    r.pop("spectra", None)
    out[run] = r
    ps = r["checks"]["power_spectrum"]["per_modality"]
    print(run, {m: [round(x, 2) for x in v["log10_ratio_per_band"]] for m, v in ps.items()}, flush=True)
import os
Path(os.environ["OUT"], "realism_runs.json").write_text(json.dumps({"cases": {"real_train": 48, "real_heldout": 48}, "runs": out}, indent=1, default=float))
