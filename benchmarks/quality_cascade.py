"""Issue 16's super-resolution stage on the anatomy data: trained on full-resolution cases, chained
behind the 2 mm base model, and judged at full resolution against real cases, beside the base
model alone (its 2 mm output resampled to the same grid: "SR off").

The base is the shipped ``anatomy-2mm`` (``--base``, or any base model folder on the same grid);
the SR stage never sees it while training (it learns full-resolution volumes from their own 2x
degraded copies), so this job runs beside ``quality_scale.py`` on another card.

Steps (progress lines with UTC timestamps on stdout; each child's output in OUT/logs/):

1. data: ``--cases`` anatomy cases at 240x240x156 (1 mm: the base's voxel / 2; seed 0: case i has
   case i of the 2 mm set's seed, pose, ventricles and tumour draw, though its smooth deformation is
   drawn on the finer grid), written by ``--workers`` processes, and a manifest with 4 folds, fold 0
   held out (folds hash the case ids with seed 0: the base's held-out ids stay held out).
2. train: the SR stage, ``configs/cascade_sr.yaml`` on the base's geometry (data.roi = 2 x the
   base's grid, data.spacing = the base's / 2, data.fold = the base's) with each ``--variants``'s
   keys on top, side by side for ``--minutes`` each; each exports its EMA weights.
3. generate: ``--generate`` cases (seeds 0..) through base + SR (``medidiff generate --model BASE
   --sr-model SR``) per variant, and the same seeds through the base alone (OUT/generated/base_only).
4. score: the realism checks of ``medidiff evaluate`` (background, spectrum per band, histograms,
   diversity; ``quality_common.realism_checks_of``) at full resolution against ``--realism-cases``
   real training and held-out cases, for every variant and for the base alone; background scores
   per case; a figure per variant (4 generated cases above 4 held-out real ones).
5. OUT/quality_cascade.json and OUT/report.md.

What this cannot show: whether the SR stage invents detail the base lacked or only sharpens what it
was given (compare its spectrum with "SR off" band by band); tissue QC, Frechet and memorisation at
full resolution (``medidiff evaluate`` on OUT/generated/<variant> does them); several seeds.

    python3 benchmarks/quality_cascade.py --out /tmp/job/quality_cascade --minutes 7     # one H200
    python benchmarks/quality_cascade.py --out /tmp/qc_smoke --smoke --device cpu       # CPU: ~2 min
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path
from typing import Any

from quality_common import (SMOKE, comparison_figure, device_info, generate_and_score, held_out_cases, log,
                            make_anatomy_data, overrides, realism_checks_of, scale_overrides, side_by_side, train_and_export,
                            write_atomic)

REPO = Path(__file__).resolve().parents[1]
SR_CONFIG = REPO / "configs" / "cascade_sr.yaml"
# the SR data: 240x240x156 is the BraTS field of view at half the 2 mm set's voxel (120x120x78)
FULL_SR = {"cases": 96, "shape": (240, 240, 156), "patch": 96, "generate": 8, "workers": 4}
SMOKE_SR = {"cases": 6, "shape": (48, 48, 32), "patch": 16, "generate": 2, "workers": 0}
# the smoke's own base model (trained for 2 steps on the SR data at data.downsample 2; the real run
# chains the shipped anatomy-2mm)
SMOKE_BASE_ROI = (32, 32, 32)
VARIANTS: dict[str, list[str]] = {
    # configs/cascade_sr.yaml as it is: since quality_cascade_20261130 the base recipe's texture
    # settings (x0 target, raw detail bands weighted 100x), which were its x0_detail100 variant there
    "shipped": [],
    # what cascade_sr.yaml shipped before: velocity target, per-band unit variance (speckle there)
    "velocity_stats": ["objective.flow_target=velocity", "latent.fit_stats=true", "objective.detail_weight=1"],
}


def base_geometry(base: Path) -> dict[str, Any]:
    """The base model's output grid, voxel size (mm), held-out fold, modalities and intensity scale (its config.json)."""
    from medidiff.config import from_dict
    from medidiff.data.config import intensity_scale
    from medidiff.experiment import ExperimentConfig

    cfg = from_dict(ExperimentConfig, json.loads((base / "config.json").read_text())["config"], source=str(base))
    d = cfg.data
    return {"grid": [int(r) // d.downsample for r in d.roi], "mm": [float(s) * d.downsample for s in d.spacing],
            "fold": d.fold, "modalities": list(d.modalities), "label_mode": d.label_mode,
            "generate_labels": cfg.conditioning.generate_labels, "intensity": intensity_scale(d)}


def sr_overrides(args: argparse.Namespace, out: Path, geo: dict[str, Any], variant: str) -> list[str]:
    """``--set`` overrides of configs/cascade_sr.yaml for one variant on the base's geometry."""
    q = SMOKE_SR if args.smoke else FULL_SR
    roi = [2 * g for g in geo["grid"]]
    smoke = ["net.channels=[8, 16]", "net.num_res_blocks=1", "net.norm_groups=4", "latent.stats_batches=1",
             "train.precision=fp32", "train.max_steps=2", "train.warmup_steps=1", "train.log_every=1",
             "data.cache=memory"] if args.smoke else [
        # one decoded disk cache for all variants (its folder hashes the data pipeline, the same for
        # them): several GB of full-resolution cases, written once instead of once per variant
        f"data.cache_dir={out / 'sr_cache'}"]
    return [f"name=sr_{variant}", f"output_dir={out / 'runs'}", "seed=0", f"data.manifest={out / 'manifest.json'}",
            f"data.root={out / 'data'}", f"data.roi={roi}", f"data.spacing={[m / 2 for m in geo['mm']]}",
            f"data.fold={geo['fold']}", f"data.modalities={geo['modalities']}", f"data.num_workers={q['workers']}",
            f"data.label_mode={geo['label_mode']}", f"conditioning.generate_labels={str(geo['generate_labels']).lower()}",
            # the base's intensity scale: the cascade refuses an SR stage on another (it reads the base's images as its own)
            *scale_overrides(geo["intensity"]),
            "cascade.scale=2", f"cascade.patch_size={[q['patch']] * 3}", "cascade.sample_mode=whole",
            f"train.device={args.device}", f"train.max_minutes={args.minutes}", "train.ckpt_every=0",
            "train.val_every=0", *smoke, *VARIANTS[variant]]


def train_smoke_base(args: argparse.Namespace, out: Path) -> Path:
    """A 2-step base model on the SR data at half resolution (the smoke has no shipped base on its grid)."""
    from medidiff.config import load_config

    p = {**SMOKE, "shape": SMOKE_SR["shape"], "roi": SMOKE_BASE_ROI, "workers": 0}
    cfg = load_config(None, [*overrides(p, out, args.device, True), "name=base", "data.downsample=2",
                             "objective.flow_target=x0", "latent.fit_stats=false", "train.max_steps=2"])
    _, model = train_and_export(cfg, out / "models" / "base")
    return model


def run_variant(args: argparse.Namespace, out: Path, variant: str) -> None:
    """Train one SR variant and export it (its own process)."""
    from medidiff.config import load_config

    cfg = load_config(out / "configs" / f"sr_{variant}.yaml")
    log(f"sr_{variant}: training for {args.minutes} min")
    trained, model = train_and_export(cfg, out / "models" / f"sr_{variant}")
    (out / "trained").mkdir(exist_ok=True)
    (out / "trained" / f"sr_{variant}.json").write_text(json.dumps({"model": str(model), **trained}, indent=2))
    log(f"sr_{variant}: {trained['steps']} steps ({trained['steps_per_s']} steps/s), exported to {model}")


def write_report(record: dict[str, Any], out: Path) -> None:
    write_atomic(out / "quality_cascade.json", json.dumps(record, indent=2, default=float))
    rows = record.get("realism", {})
    cols = list(record["generated"])  # every set generated so far; realism rows fill in when measured

    def cell(run: str, pick: Any) -> str:
        try:
            return f"{pick(rows[run]):.3f}"
        except KeyError:
            return "-"

    lines = [f"# SR stage on the anatomy data behind {record['base']}", "",
             f"- command: `{record['command']}`", f"- {record['date']}, {record['device']}, torch {record['torch']}",
             f"- data: {record['data']['cases']} anatomy cases at {record['data']['shape']} (seed 0), fold "
             f"{record['geometry']['fold']} held out; SR grid {record['sr_roi']} at {record['sr_spacing']} mm, "
             f"base grid {record['geometry']['grid']} at {record['geometry']['mm']} mm",
             f"- realism against the first {record['realism_cases']} real training and held-out cases (at most) on the "
             "SR grid (base_only: the base's output resampled onto it by the real data's pipeline: SR off)", "",
             "| measure | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    lines.append("| SR training steps (steps/s) | " + " | ".join(
        (f"{record['trained'][r]['steps']} ({record['trained'][r]['steps_per_s']})" if r in record["trained"]
         else "-") for r in cols) + " |")
    lines.append("| generation s for all cases | " + " | ".join(str(record["generated"][r]["seconds"]) for r in cols) + " |")
    for key, label in (("background_rms", "background RMS outside the head"), ("speckle", "speckle (outside > 0.05)")):
        lines.append(f"| {label} | " + " | ".join(f"{record['generated'][r]['background'][key]:.4f}" for r in cols) + " |")
    for mod in record["modalities"]:
        lines.append(f"| spectrum max abs log10 {mod} (goal <= 0.30) | " + " | ".join(cell(
            r, lambda v: v["checks"]["power_spectrum"]["per_modality"][mod]["max_abs_log10_ratio"]) for r in cols) + " |")
    for mod in record["modalities"]:
        lines.append(f"| histogram W1 {mod} | " + " | ".join(cell(
            r, lambda v: v["checks"]["intensity_histogram"]["per_modality"][mod]["wasserstein"]) for r in cols) + " |")
    failed = record.get("generate_failed", {})
    if failed:
        lines += ["", "Generation failed: " + "; ".join(f"{r}: {e}" for r, e in failed.items())]
    lines += ["", "Power spectrum, log10 (synthetic / real) per radial band, low to high frequency:", "",
              "| set | modality | bands |", "|---|---|---|"]
    for r, res in rows.items():
        for mod, v in res["checks"]["power_spectrum"]["per_modality"].items():
            lines.append(f"| {r} | {mod} | " + " ".join(f"{x:+.2f}" for x in v["log10_ratio_per_band"]) + " |")
    lines += [""] + [f"![{r}: generated (top) above held-out real (bottom)]({r}_vs_real.png)" for r in rows
                     if (out / f"{r}_vs_real.png").exists()]
    write_atomic(out / "report.md", "\n".join(lines) + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--base", default="anatomy-2mm", help="base model folder or shipped name (default %(default)s)")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS),
                    help="SR variants trained side by side (default: all)")
    ap.add_argument("--cases", type=int, help=f"full-resolution anatomy cases (default {FULL_SR['cases']})")
    ap.add_argument("--minutes", type=float, default=7.0, help="training budget per variant (default %(default)s)")
    ap.add_argument("--generate", type=int, help="cases generated per variant (default 8; 2 with --smoke)")
    ap.add_argument("--realism-cases", type=int, default=32,
                    help="real training and held-out cases the realism checks compare with (default %(default)s)")
    ap.add_argument("--workers", type=int, default=16, help="processes writing the data (default %(default)s)")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--smoke", action="store_true", help="tiny cases and nets, 2 steps (CPU): checks it runs")
    ap.add_argument("--variant", help=argparse.SUPPRESS)  # internal: one training process
    args = ap.parse_args()
    q = dict(SMOKE_SR if args.smoke else FULL_SR)
    q["cases"] = q["cases"] if args.cases is None else args.cases
    args.generate = q["generate"] if args.generate is None else args.generate
    for name, v in (("--cases", q["cases"]), ("--generate", args.generate), ("--workers", args.workers)):
        if v < 1:
            ap.error(f"{name} must be >= 1, got {v}")
    if args.minutes <= 0 or args.realism_cases < 2:
        ap.error("--minutes must be > 0 and --realism-cases >= 2")
    if len(set(args.variants)) != len(args.variants):
        ap.error(f"--variants names one twice: {args.variants}")
    out = Path(args.out).absolute()
    if args.variant:
        run_variant(args, out, args.variant)
        return 0

    from medidiff.config import load_config, save_resolved
    from medidiff.pretrained import model_path

    out.mkdir(parents=True, exist_ok=True)
    log(f"data: {q['cases']} anatomy cases {q['shape']} in {args.workers} processes")
    data_s = make_anatomy_data(out, {"cases": q["cases"], "shape": q["shape"]}, workers=args.workers)
    base = train_smoke_base(args, out) if args.smoke else Path(model_path(args.base))
    if not (base / "config.json").is_file():
        ap.error(f"--base {args.base}: no model folder at {base}")
    geo = base_geometry(base)
    for v in args.variants:  # resolved before any training: a bad key is one line, exit 2
        save_resolved(load_config(SR_CONFIG, sr_overrides(args, out, geo, v)), out / "configs", f"sr_{v}.yaml")
    sr0 = load_config(out / "configs" / f"sr_{args.variants[0]}.yaml")
    record: dict[str, Any] = {
        "run": "quality_cascade", "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), **device_info(args.device),
        "data": {**q, "seconds": round(data_s, 1)}, "base": str(base) if args.smoke else args.base, "geometry": geo,
        "sr_roi": list(sr0.data.roi), "sr_spacing": list(sr0.data.spacing), "variants": list(args.variants),
        "minutes": args.minutes, "realism_cases": args.realism_cases, "modalities": geo["modalities"],
        "trained": {}, "generated": {}, "realism": {},
    }
    me = [sys.executable, str(Path(__file__).resolve()), "--out", str(out), "--minutes", str(args.minutes),
          "--device", args.device, *(["--smoke"] if args.smoke else [])]
    log(f"train: SR variants {args.variants} side by side for {args.minutes} min each")
    exits = side_by_side({f"sr_{v}": [*me, "--variant", v] for v in args.variants}, out / "logs")
    record["exits"] = exits
    done = [v for v in args.variants if exits[f"sr_{v}"] == 0]
    for v in done:
        record["trained"][f"sr_{v}"] = json.loads((out / "trained" / f"sr_{v}.json").read_text())
    generated = {"base_only": out / "generated" / "base_only"}
    write_atomic(out / "quality_cascade.json", json.dumps(record, indent=2, default=float))  # what trained
    record["generated"]["base_only"] = generate_and_score(base, generated["base_only"], args.generate, args.device)
    record["generate_failed"] = {}
    for v in done:  # one variant's failure (e.g. out of memory at full resolution) leaves the others
        try:
            record["generated"][f"sr_{v}"] = generate_and_score(base, out / "generated" / f"sr_{v}", args.generate,
                                                                args.device, sr_model=out / "models" / f"sr_{v}")
        except (SystemExit, RuntimeError) as e:
            record["generate_failed"][f"sr_{v}"] = str(e).splitlines()[0][:300] if str(e) else type(e).__name__
            log(f"sr_{v}: generation failed: {record['generate_failed'][f'sr_{v}']}")
            continue
        generated[f"sr_{v}"] = out / "generated" / f"sr_{v}"
        log(f"sr_{v}: {args.generate} cases in {record['generated'][f'sr_{v}']['seconds']} s, background RMS "
            f"{record['generated'][f'sr_{v}']['background']['background_rms']:.4f}")
    real = held_out_cases(out, 4, geo["fold"])
    for name, folder in generated.items():
        cases = sorted(d for d in folder.iterdir() if d.is_dir())[:4]
        if name != "base_only":  # the base alone is on its own grid; its figure is the base model's
            comparison_figure(cases, real, out / f"{name}_vs_real.png")
    write_report(record, out)  # what trained and generated lands before the realism checks run
    t0 = time.perf_counter()
    record["realism"] = realism_checks_of(out / "configs" / f"sr_{args.variants[0]}.yaml", out / "manifest.json",
                                          out / "data", generated, args.realism_cases, out / "realism")
    record["realism_seconds"] = round(time.perf_counter() - t0, 1)
    write_report(record, out)
    print((out / "report.md").read_text(), flush=True)
    return 0 if not any(exits.values()) and not record["generate_failed"] else 1


if __name__ == "__main__":
    from medidiff.cli.common import run_script

    raise SystemExit(run_script(main))
