"""Quality ablation on the anatomy data set: arms trained side by side on one GPU, then sampled and
scored on the background checks that grain and speckle cannot pass.

Each arm is the same wavelet-flow base model (images and WT/TC/ET generated together, 2 mm anatomy
cases in the BraTS field of view, roi 80 x 96 x 80) with a few config keys changed; every arm trains
for the same wall-clock budget (train.max_minutes, constant LR after warm-up) in its own process, so
the arms share the card as equals. Then each exports its EMA weights, generates ``--generate``
cases with its own sampler settings, and is scored on speckle, background RMS and head fraction
(``quality_common.background_scores``), with a tri-planar PNG of the generated cases (t1n and t2f
rows) per sampling variant.

Every arm's model is also sampled with each of :data:`SAMPLING` (30 or 100 Euler steps, Heun,
no x0 clipping), which separates the sampler's share of the grain from the network's.

What this cannot show: anatomy quality inside the brain (tissue contrast, spectrum, Frechet) --
the evaluation issue's metrics do that (quality_scale.py); with 4 cases and one seed per arm the
figures are hints, not verdicts.

    python benchmarks/quality_ablation.py --out /tmp/abl --minutes 6          # H200: ~9 min in all
    python benchmarks/quality_ablation.py --out /tmp/abl_smoke --smoke --device cpu
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path

import numpy as np
from quality_common import (FULL, SMOKE, background_scores, device_info, make_anatomy_data, overrides, real_scores,
                            side_by_side, train_and_export)

ARMS: dict[str, list[str]] = {
    # per-sub-band unit variance (the shipped default): detail bands ~23x louder relative to LLL
    "stats_on": ["latent.fit_stats=true"],
    # raw detail bands, LLL / sqrt(8), as WDM-3D (FIELD-NOTES: oval heads with ventricles on phantoms)
    "stats_off": ["latent.fit_stats=false"],
    # the same with an x0 network: zeros where the data is zero are a constant to it (speckle?)
    "x0_stats_off": ["latent.fit_stats=false", "objective.flow_target=x0"],
    # WDM-3D's objective on the same net, data and budget: x0-prediction DDPM, linear schedule, 1000 steps
    "wdm_ddpm_x0": ["latent.fit_stats=false", "objective.type=ddpm", "objective.prediction=x0",
                    "objective.schedule=linear", "objective.time_shift=false", "sampler.name=ddpm",
                    "sampler.num_steps=1000"],
}
# Sampling variants scored on every arm's model (no retraining): is the grain the sampler's or the net's?
SAMPLING: dict[str, dict] = {
    "euler30": {},
    "euler100": {"num_steps": 100},
    "heun30": {"name": "heun"},
    "euler30_noclip": {"clip_x0": False},
}
DDPM_SAMPLING: dict[str, dict] = {
    "ddpm1000": {},
    "ddim50": {"name": "ddim", "num_steps": 50},
}


def run_arm(args: argparse.Namespace, p: dict, name: str) -> dict:
    """Train, export, generate and score one arm (its own process)."""
    from dataclasses import replace

    import torch

    from medidiff.config import load_config, save_resolved
    from medidiff.generation import DiffusionPipeline
    from medidiff.viz import triplanar, write_png

    out = Path(args.out)
    cfg = load_config(None, [*overrides(p, out, args.device, args.smoke), f"name={name}", *ARMS[name],
                             f"train.max_minutes={args.minutes}", *(["train.max_steps=6"] if args.smoke else [])])
    save_resolved(cfg, out / "arms", f"{name}.yaml")
    trained, model = train_and_export(cfg, out / "models" / name)
    pipe = DiffusionPipeline.from_pretrained(model, device=args.device)
    record = {"arm": name, "overrides": ARMS[name], **trained, "sampling": {}}
    variants = DDPM_SAMPLING if cfg.objective.type == "ddpm" else SAMPLING
    if args.smoke:
        variants = dict(list(variants.items())[:1])
    for vname, change in variants.items():
        sampler = replace(pipe.sampler_config, **change)
        t1 = time.perf_counter()
        cases = pipe(list(range(p["generate"])), sampler=sampler)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        images = [(np.asarray(c.images, dtype=np.float32) + 1) / 2 for c in cases]  # (M, X, Y, Z) in [0, 1]
        scores = [background_scores(img) for img in images]
        panels = [triplanar([img[0], img[-1]]) for img in images]  # t1n and t2f
        width = max(x.shape[1] for x in panels)
        write_png(out / f"{name}_{vname}.png",
                  np.concatenate([np.pad(x, ((0, 4), (0, width - x.shape[1]), (0, 0))) for x in panels], axis=0))
        record["sampling"][vname] = {
            "sampler": {"name": sampler.name, "num_steps": sampler.num_steps, "clip_x0": sampler.clip_x0},
            "seconds": round(time.perf_counter() - t1, 1), "per_case": scores,
            "mean": {k: float(np.mean([sc[k] for sc in scores])) for k in scores[0]},
        }
    (out / "arms" / f"{name}.json").write_text(json.dumps(record, indent=2))
    return record


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    ap.add_argument("--cases", type=int, help="data set size (default 32; 6 with --smoke)")
    ap.add_argument("--minutes", type=float, default=6.0, help="training budget per arm (arms run side by side)")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--arm", help=argparse.SUPPRESS)  # internal: run one arm in this process
    args = ap.parse_args()
    p = dict(SMOKE if args.smoke else FULL)
    if args.cases:
        p["cases"] = args.cases
    out = Path(args.out).absolute()
    if args.arm:
        run_arm(args, p, args.arm)
        return 0
    out.mkdir(parents=True, exist_ok=True)
    (out / "arms").mkdir(exist_ok=True)
    record: dict = {"run": "quality_ablation", "command": " ".join([Path(sys.executable).name, *sys.argv]),
                    "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "data": dict(p)}
    record.update(device_info(args.device))
    record["data_seconds"] = round(make_anatomy_data(out, p), 1)
    record["real"] = real_scores(out, p, p["generate"])
    codes = side_by_side({name: [sys.executable, __file__, "--out", str(out), "--arm", name, "--minutes", str(args.minutes),
                                 "--device", args.device, *(["--smoke"] if args.smoke else [])] for name in args.arms},
                         out / "logs")
    record["arms"] = {}
    for name, code in codes.items():
        path = out / "arms" / f"{name}.json"
        record["arms"][name] = json.loads(path.read_text()) if code == 0 and path.exists() else {"exit": code}
    (out / "ablation.json").write_text(json.dumps(record, indent=2))
    rows = ["| arm | sampler | steps | loss (first/last 200) | speckle | background RMS | head fraction |",
            "|---|---|---|---|---|---|---|"]
    rows.append(f"| real (held out) | | | | {record['real']['speckle']:.4f} | {record['real']['background_rms']:.4f} | "
                f"{record['real']['head_fraction']:.3f} |")
    for name, r in record["arms"].items():
        if "sampling" not in r:
            rows.append(f"| {name} | failed (exit {r['exit']}) | | | | | |")
            continue
        for vname, v in r["sampling"].items():
            m = v["mean"]
            rows.append(f"| {name} | {vname} | {r['steps']} | {r['loss_first_200']:.3f} / {r['loss_last_200']:.3f} | "
                        f"{m['speckle']:.4f} | {m['background_rms']:.4f} | {m['head_fraction']:.3f} |")
    (out / "ablation.md").write_text("\n".join(rows) + "\n")
    print("\n".join(rows))
    return 0 if all(c == 0 for c in codes.values()) else 1


if __name__ == "__main__":
    from medidiff.cli.common import run_script

    raise SystemExit(run_script(main))
