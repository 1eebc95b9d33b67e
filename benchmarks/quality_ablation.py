"""Quality ablation on the anatomy data set: arms trained side by side on one GPU, then sampled and
scored on the background checks that grain and speckle cannot pass.

Each arm is the same wavelet-flow base model (images and WT/TC/ET generated together, 2 mm anatomy
cases in the BraTS field of view, roi 80 x 96 x 80) with a few config keys changed; every arm trains
for the same wall-clock budget (train.max_minutes, constant LR after warm-up) in its own process, so
the arms share the card as equals. Then each exports its EMA weights, generates ``--generate``
cases with its own sampler settings, and is scored:

* ``speckle``: fraction of voxels outside the (dilated) head with intensity > 0.05 of the output
  range. Real skull-stripped cases score 0: any speckle is the model's.
* ``background_rms``: RMS intensity outside the head, as a fraction of the output range ([0, 1]
  in generated files); issue "quality" asks for <= 0.02.
* ``head_fraction``: the head's share of the grid, beside the real cases' (a collapsed or
  exploded sample is far from it).
* a tri-planar PNG of the generated cases (t1n and t2f rows) per sampling variant.

Every arm's model is also sampled with each of :data:`SAMPLING` (30 or 100 Euler steps, Heun,
no x0 clipping), which separates the sampler's share of the grain from the network's.

The head of a generated case is the largest connected component of (mean over modalities > 0.1),
holes filled, dilated by 2 voxels: isolated speckle is not part of it. What this cannot show: anatomy
quality inside the brain (tissue contrast, spectrum, Frechet) -- the evaluation issue's metrics do
that; with 4 cases and one seed per arm the figures are hints, not verdicts.

    python benchmarks/quality_ablation.py --out /tmp/abl --minutes 6          # H200: ~9 min in all
    python benchmarks/quality_ablation.py --out /tmp/abl_smoke --smoke --device cpu
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

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
# net: the largest of this layout whose bf16 weights fit the 25 MB a pretrained model may ship (11.6M)
FULL = {"cases": 32, "shape": (120, 120, 78), "roi": (80, 96, 80), "channels": [48, 96, 160], "micro_batch": 8,
        "generate": 4, "workers": 4}
SMOKE = {"cases": 6, "shape": (40, 40, 26), "roi": (32, 32, 32), "channels": [16, 32], "micro_batch": 2,
         "generate": 2, "workers": 0}


def overrides(p: dict, out: Path, device: str, smoke: bool) -> list[str]:
    from medidiff.data.prepare import synthetic_spacing

    return [
        f"output_dir={out / 'runs'}", "seed=0", f"data.manifest={out / 'manifest.json'}", f"data.root={out / 'data'}",
        f"data.spacing={list(synthetic_spacing('anatomy', p['shape']))}", f"data.roi={list(p['roi'])}",
        "data.fold=0", "data.label_mode=regions", "data.cache=memory", f"data.num_workers={p['workers']}",
        "latent.levels=1", "conditioning.generate_labels=true", f"net.channels={p['channels']}",
        "net.num_res_blocks=1" if smoke else "net.num_res_blocks=[1, 2, 2]", "net.skip=add",
        f"net.norm_groups={8 if smoke else 16}", "objective.type=flow", "objective.time_shift=true",
        "sampler.name=euler", "sampler.num_steps=30", "sampler.clip_x0=true",
        f"train.micro_batch={p['micro_batch']}", "train.lr=2.0e-4", "train.lr_schedule=constant",
        f"train.warmup_steps={2 if smoke else 200}", f"train.precision={'fp32' if smoke else 'bf16'}",
        f"train.device={device}", "train.log_every=50", "train.ckpt_every=2000", "train.preview_every=0",
        "train.ema.max_decay=0.999", "train.max_steps=1000000",
    ]


def head_mask(volume: np.ndarray) -> np.ndarray:
    """(X, Y, Z) bool: the largest component of the mean image > 0.1, holes filled, dilated 2."""
    from scipy import ndimage

    fg = volume > 0.1
    lab, n = ndimage.label(fg)
    if n == 0:
        return np.zeros(volume.shape, bool)
    sizes = ndimage.sum(fg, lab, index=np.arange(1, n + 1))
    head = ndimage.binary_fill_holes(lab == 1 + int(np.argmax(sizes)))
    return ndimage.binary_dilation(head, iterations=2)


def background_scores(images: np.ndarray) -> dict[str, float]:
    """images: (M, X, Y, Z) in [0, 1]. Speckle fraction, background RMS and head fraction."""
    head = head_mask(images.mean(axis=0))
    outside = images[:, ~head]
    return {
        "speckle": float((outside > 0.05).mean()) if outside.size else 0.0,
        "background_rms": float(np.sqrt((outside**2).mean())) if outside.size else 0.0,
        "head_fraction": float(head.mean()),
    }


def read_case(folder: Path, names: tuple[str, ...]) -> np.ndarray:
    import nibabel as nib

    return np.stack([np.asarray(nib.load(str(folder / f"{n}.nii.gz")).dataobj, dtype=np.float32) for n in names])


def real_scores(out: Path, p: dict, n: int) -> dict[str, float]:
    """The same scores on held-out real cases through the base model's data pipeline, in [0, 1]."""
    from medidiff.config import load_config
    from medidiff.data.dataset import manifest_datasets

    cfg = load_config(None, [*overrides(p, out, "cpu", True), "data.cache=none"])
    _, val = manifest_datasets(cfg.data, out / "runs" / "real", divisor=1, with_label=False, train_transforms=False)
    rows = []
    for i in range(min(n, len(val))):
        img = val[i]["image"].numpy()  # (M, X, Y, Z) in [-1, 1]
        rows.append(background_scores((img + 1) / 2))
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


def run_arm(args: argparse.Namespace, p: dict, name: str) -> dict:
    """Train, export, generate and score one arm (its own process)."""
    from medidiff.config import load_config, save_resolved
    from medidiff.training.diffusion import run_dir_of
    from medidiff.training.stages import STAGES
    from medidiff.viz import triplanar, write_png

    out = Path(args.out)
    cfg = load_config(None, [*overrides(p, out, args.device, args.smoke), f"name={name}", *ARMS[name],
                             f"train.max_minutes={args.minutes}", *(["train.max_steps=6"] if args.smoke else [])])
    save_resolved(cfg, out / "arms", f"{name}.yaml")
    train_fn, export_fn = STAGES[cfg.stage]()
    t0 = time.perf_counter()
    result = train_fn(cfg, progress=False)
    seconds = time.perf_counter() - t0
    model = export_fn(run_dir_of(cfg), out / "models" / name)
    from dataclasses import replace

    import torch

    from medidiff.generation import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(model, device=args.device)
    losses = result.losses
    record = {
        "arm": name, "overrides": ARMS[name], "steps": result.final_step, "train_seconds": round(seconds, 1),
        "steps_per_s": round(len(losses) / max(seconds, 1e-9), 2),
        "loss_first_200": float(np.mean(losses[:200])), "loss_last_200": float(np.mean(losses[-200:])),
        "sampling": {},
    }
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
    from medidiff.data.manifest import build_brats_manifest, write_manifest
    from medidiff.data.prepare import write_synthetic_set

    out.mkdir(parents=True, exist_ok=True)
    (out / "arms").mkdir(exist_ok=True)
    record: dict = {"run": "quality_ablation", "command": " ".join([Path(sys.executable).name, *sys.argv]),
                    "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "data": dict(p)}
    try:
        import torch

        record["device"] = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "cpu"
        record["torch"] = torch.__version__
    except Exception:  # noqa: BLE001 - informational only
        pass
    t0 = time.perf_counter()
    if not (out / "manifest.json").exists():
        write_synthetic_set("anatomy", out / "data", p["cases"], shape=p["shape"], seed=0)
        write_manifest(build_brats_manifest(out / "data", name="anatomy", num_folds=4, seed=0), out / "manifest.json")
    record["data_seconds"] = round(time.perf_counter() - t0, 1)
    record["real"] = real_scores(out, p, p["generate"])
    procs = {name: subprocess.Popen([sys.executable, __file__, "--out", str(out), "--arm", name, "--minutes",
                                     str(args.minutes), "--device", args.device, *(["--smoke"] if args.smoke else [])])
             for name in args.arms}
    codes = {name: proc.wait() for name, proc in procs.items()}
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
