"""Realism checks (background, spectrum, histograms) of seed 0's 8 cases on CPU, against a subset of the
real cases (the full image task ran out of memory on this 24 GiB machine)."""
import json, sys
from pathlib import Path
from medidiff.cli.evaluate_cmd import load_eval_configs
from medidiff.eval import data as evdata, realism as rl
from medidiff.data.transforms import build_transforms

exp, cfg = load_eval_configs("/tmp/gpu1/quality_scale/configs/seed0.yaml", None)
dcfg = evdata.eval_data_config(exp.data)
train_items, held_items, label_map = evdata.real_items(Path("/tmp/gpu1/quality_scale/manifest.json"), Path("/tmp/qs/data"), 0)
n_train, n_held = int(sys.argv[1]), int(sys.argv[2])
real_tf = build_transforms(dcfg, train=False, label_map=label_map)
real_train = evdata.load_cases("real_train", train_items[:n_train], real_tf, with_label=True, progress=False)
real_test = evdata.load_cases("real_heldout", held_items[:n_held], real_tf, with_label=True, progress=False)
synth_items = evdata.synthetic_items(Path("/tmp/qs/gen0"), dcfg.modalities)
synthetic = evdata.load_cases("synthetic", synth_items, evdata.synthetic_transforms(dcfg, background=cfg.synthetic_background, with_label=True), with_label=True, progress=False)
r = rl.realism_checks(synthetic.images, real_train.images, real_test.images, modalities=dcfg.modalities,
    bands=cfg.realism_bands, background_tol=cfg.background_tol, spectrum_log_tol=cfg.spectrum_log_tol,
    histogram_factor=cfg.histogram_factor, histogram_abs_tol=cfg.histogram_abs_tol,
    diversity_sigma=cfg.diversity_sigma, diversity_min_ratio=cfg.diversity_min_ratio, seed=0)
r.pop("spectra", None)
out = {"cases": {"real_train": n_train, "real_heldout": n_held, "synthetic": len(synth_items)}, "realism": r}
Path("/tmp/qs/realism_seed0.json").write_text(json.dumps(out, indent=1, default=float))
print(json.dumps({k: v.get("pass") for k, v in r["checks"].items()}), r.get("failed"))
