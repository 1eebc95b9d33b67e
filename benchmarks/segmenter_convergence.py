"""Do the evaluation segmenter's defaults converge? Real-vs-real Dice on phantoms at 2 mm.

Issue 14 asks the defaults of ``medidiff evaluate`` (EvalConfig: epochs, plateau stop, seeds) to
reach WT Dice >= 0.9 when a segmenter trained on real phantom cases is tested on held-out real
phantom cases at 2 mm (the recorded GPU run's evaluation grid was 2x block-averaged). This script
writes phantoms, runs them through the evaluation's own data path (``medidiff.eval.data``), trains
one segmenter per seed with the defaults and prints/writes Dice per region, HD95 and the training
history (epochs, where the plateau stop ended it).

Measured on CPU (2026-11-30, 2 shared cores, defaults: up to 150 epochs, patience 15, seeds
0 1 2; 20 phantoms of 96x96x80 at 1 mm -> 48x48x40 at 2 mm, 14 training / 6 held-out cases):
WT Dice 0.948 / 0.953 / 0.960, TC 0.942 / 0.957 / 0.953, ET 0.831 / 0.852 / 0.829; every seed
stopped on the plateau (110, 102, 115 epochs), 6-14 min each. Recorded in
benchmarks/results/segmenter_convergence_cpu_20261130.json.

CPU: python benchmarks/segmenter_convergence.py --out /tmp/segconv --cases 20 --shape 96 96 80
GPU (BraTS-sized phantoms, 120x120x80 at 2 mm; not run yet):
     python benchmarks/segmenter_convergence.py --out /tmp/segconv --cases 24 --shape 240 240 160 --device cuda
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's medidiff, not an installed one


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--cases", type=int, default=20)
    p.add_argument("--folds", type=int, default=4, help="fold 0 is held out")
    p.add_argument("--shape", type=int, nargs=3, default=[96, 96, 80], help="phantom grid at 1 mm (= data.roi)")
    p.add_argument("--seeds", type=int, nargs="+", help="default: EvalConfig's")
    p.add_argument("--device", default="cpu")
    p.add_argument("--set", dest="overrides", action="append", default=[], help="eval.KEY=VALUE overrides")
    args = p.parse_args()

    import torch

    from medidiff.config import apply_overrides, from_dict
    from medidiff.data.config import DataConfig
    from medidiff.data.manifest import build_brats_manifest, write_manifest
    from medidiff.data.phantom import write_phantom_dataset
    from medidiff.eval import data as evdata
    from medidiff.eval.config import EvalConfig
    from medidiff.eval.segmentation import evaluate_segmenter, summarise_scores, train_segmenter

    out = Path(args.out)
    root = out / "phantoms"
    if not (root / "phantom.json").is_file():
        write_phantom_dataset(root, args.cases, shape=tuple(args.shape), seed=0, tumour_fraction=1.0, progress=False)
    manifest = write_manifest(build_brats_manifest(root, num_folds=args.folds), out / "phantoms.json")
    cfg = from_dict(EvalConfig, apply_overrides({}, [o.removeprefix("eval.") for o in args.overrides]), where="eval")
    cfg = dataclasses.replace(cfg, device=args.device, **({"seeds": args.seeds} if args.seeds else {}))
    dcfg = evdata.eval_data_config(DataConfig(manifest=str(manifest), roi=tuple(args.shape), downsample=2, fold=0,
                                              cache="none"))
    spacing = [s * dcfg.downsample for s in dcfg.spacing]
    train_items, held_items, label_map = evdata.real_items(manifest, root, 0)
    tf = __import__("medidiff.data.transforms", fromlist=["build_transforms"]).build_transforms(
        dcfg, train=False, label_map=label_map)
    train = evdata.load_cases("real_train", train_items, tf, with_label=True, progress=False)
    test = evdata.load_cases("real_heldout", held_items, tf, with_label=True, progress=False)
    print(f"grid {tuple(train.images.shape[2:])} at {spacing} mm; {len(train)} training, {len(test)} held-out cases")
    rows = []
    for seed in cfg.seeds:
        t0 = time.time()
        model, hist = train_segmenter(
            train.images, train.labels, epochs=cfg.epochs, batch_size=cfg.batch_size, seed=seed, lr=cfg.lr,
            weight_decay=cfg.weight_decay, init_filters=cfg.init_filters, val_fraction=cfg.val_fraction,
            patience=cfg.patience, min_delta=cfg.min_delta, max_steps=cfg.steps, threshold=cfg.threshold,
            device=cfg.device, progress=False)
        sc = evaluate_segmenter(model, test.images, test.labels, spacing, threshold=cfg.threshold)
        row = {"seed": seed, "seconds": round(time.time() - t0, 1), "regions": summarise_scores(sc),
               "training": dataclasses.asdict(hist)}
        rows.append(row)
        r = row["regions"]
        print(f"seed {seed}: WT {r['WT']['dice']:.3f} TC {r['TC']['dice']:.3f} ET {r['ET']['dice']:.3f} | "
              f"{hist.epochs} epochs ({hist.stopped}, best {hist.best_epoch}, val Dice {hist.best_val_dice:.3f}), "
              f"{row['seconds']} s", flush=True)
    wt = np.array([r["regions"]["WT"]["dice"] for r in rows])
    result = {"grid": list(train.images.shape[2:]), "spacing_mm": spacing, "cases": [len(train), len(test)],
              "eval": dataclasses.asdict(cfg), "torch": torch.__version__, "seeds": rows,
              "wt_dice_mean": float(wt.mean()), "wt_dice_min": float(wt.min())}
    (out / "segmenter_convergence.json").write_text(json.dumps(result, indent=2))
    print(f"WT Dice mean {wt.mean():.3f}, min {wt.min():.3f} (target >= 0.9)")


if __name__ == "__main__":
    main()
