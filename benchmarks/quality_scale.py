"""Issue 16's next quality run: the shipped model's recipe (quality_ablation's x0 arm) on a larger
anatomy set, trained from several seeds side by side on one GPU, each scored on the background and
by ``medidiff evaluate`` (image, tissue, memorisation), with an interval over seeds.

Why: the shipped ``anatomy-2mm`` (x0 flow, wavelet, 11.6M parameters) keeps a clean background but
saw its 24 training cases (32 with the held-out fold) ~1260-1700 times, and 5 of 8 of its cases are
near copies of them; it was one seed. Here the same net and recipe train on ``--cases`` cases
(384: 288 training, fold 0's 96 held out) for ``--minutes`` each: at the ablation's ~6-7 steps/s per process, 8 minutes would be
~100 passes over the 288 training cases (an estimate; the run records its steps).

Steps (progress lines with UTC timestamps on stdout; each child's output in OUT/logs/):

1. data: ``--cases`` anatomy cases at 120x120x78 (seed 0, the shipped model's generator and shape),
   written by ``--workers`` processes; a manifest with 4 folds, fold 0 held out.
2. train: ``--seeds`` copies of ``quality_ablation.ARMS["x0_stats_off"]`` (seed s, run ``seed<s>``,
   ``train.max_minutes``; ``--set KEY=VALUE`` reaches every seed) side by side, each in its own
   process; beside them, the evaluation's feature net and tissue segmenter are trained once on the
   real training split (``medidiff.eval.train_feature_net``, ``train_tissue_net``; each in its own
   process), so every seed's Frechet is on the same features and its tissue QC through the same
   instrument, and no evaluation trains a net (three tissue segmenters trained side by side were
   what ran past the budget on the 2 x H200 run).
   Each seed then exports its EMA weights (OUT/models/seed<s>: seed 0's is the folder
   ``benchmarks/pack_pretrained.py`` packs), generates ``--generate`` cases (seeds 0.., the
   model's own sampler: 30 Euler steps, x0 clipping, as the shipped model's card) and scores
   their background (``quality_common.background_scores``).
3. evaluate, in phases (``EVAL_PHASES``), each ``medidiff evaluate`` per seed side by side against
   the same manifest: the held-out fold is the floor and the tissue reference, the training folds
   (the cases the model saw) are what the memorisation audit compares with. First ``--tasks
   image,memorisation`` (OUT/eval/seed<s>), then ``--tasks tissue`` (OUT/eval/seed<s>_tissue).
   ``--eval-epochs`` caps the feature net's and the tissue segmenter's epochs (default 10, about
   1150 steps of batch 2 on 230 cases; the plateau stop's patience of 15 never ends them earlier).
   ``--eval-minutes`` caps each phase's wall time (default 6): evaluations still running then are
   stopped and the report names the seeds and phases that are missing, so the job ends inside its
   device budget with what it measured: evaluation takes at most 2 x (``--eval-minutes`` + 10 s
   to stop). The training step has no such cap: the seeds stop at ``--minutes``, the shared nets
   at ``--eval-epochs`` (the feature net took 6.3 min beside 3 seeds on the 2 x H200 run).
4. OUT/quality_scale.json and OUT/report.md: per seed, mean and interval over seeds; one PNG per
   seed (4 generated cases above 4 held-out real ones, full resolution, all modalities and labels).
   Both are written after training and again after every evaluation phase, so what a phase
   measured is on disk before the next one starts: on the first 2 x H200 run the three
   evaluations (tissue still training its segmenter) ran past the device budget and evaluate,
   which writes its report only at the end, left nothing. A missing seed or phase is named in the
   report.

Intervals over seeds: mean +- t(0.975, n-1) x std / sqrt(n) (a 95 % Student t interval; with 3
seeds it is wide, t = 4.30), with min and max beside it. Seeds are the only repeat here: the
cases within a seed are not independent draws of the training outcome.

    python3 benchmarks/quality_scale.py --out /tmp/job/quality_scale --minutes 8          # one H200: ~14 min
    python benchmarks/quality_scale.py --out /tmp/qs_smoke --smoke --device cpu           # CPU: ~3 min
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from quality_ablation import ARMS
from quality_common import (FULL, MODALITIES, SMOKE, TIMED_OUT, background_scores, comparison_figure, device_info, log,
                            make_anatomy_data, overrides, read_case, real_scores, side_by_side, train_and_export)

ARM = "x0_stats_off"  # the shipped model's recipe
# the evaluation's phases in order: name -> evaluate --tasks. Each phase's report lands in its own
# folder (eval_dir) before the next starts; tissue goes last because it trains a segmenter and is
# the one that ran longest (the 2 x H200 run: still going after 17 min, three seeds side by side).
EVAL_PHASES: dict[str, str] = {"image": "image,memorisation", "tissue": "tissue"}
# the net each phase's evaluations share (OUT/<name>), trained once beside the seeds: phase -> name
SHARED_NETS: dict[str, str] = {"image": "feature_net", "tissue": "tissue_net"}
# keys this script sets per seed: a --set of one of them would silently break the comparison
OWNED = ("seed", "name", "output_dir", "data.manifest", "data.root", "data.fold", "train.max_minutes")


def summarise_over_seeds(values: Sequence[float]) -> dict[str, Any]:
    """Mean over seeds with a 95 % Student t interval (mean +- t(0.975, n-1) s / sqrt(n), s with
    ddof=1), min and max; non-finite values (a failed seed) are left out and counted in ``n``."""
    from scipy import stats

    x = np.array([v for v in values if v is not None and math.isfinite(v)], np.float64)
    if x.size == 0:
        return {"n": 0, "mean": None, "std": None, "min": None, "max": None, "t95": None}
    out: dict[str, Any] = {"n": int(x.size), "mean": float(x.mean()), "min": float(x.min()), "max": float(x.max())}
    if x.size < 2:
        return {**out, "std": None, "t95": None}
    std = float(x.std(ddof=1))
    half = float(stats.t.ppf(0.975, x.size - 1)) * std / math.sqrt(x.size)
    return {**out, "std": std, "t95": [out["mean"] - half, out["mean"] + half]}


def eval_dir(out: Path, seed: int, phase: str) -> Path:
    """One seed's report folder of one evaluation phase: OUT/eval/seed<s> (image) or OUT/eval/seed<s>_<phase>."""
    return out / "eval" / (f"seed{seed}" if phase == "image" else f"seed{seed}_{phase}")


def phase_reports(out: Path, seed: int) -> dict[str, dict[str, Any]]:
    """The report.json of every evaluation phase of ``seed`` that finished (a missing one is left out)."""
    found = {}
    for phase in EVAL_PHASES:
        path = eval_dir(out, seed, phase) / "report.json"
        if path.is_file():
            found[phase] = json.loads(path.read_text())
    return found


def eval_metrics(*reports: dict[str, Any]) -> dict[str, float]:
    """The scalar scores the seeds are compared on, from one seed's ``medidiff evaluate`` report.json
    files (one per evaluation phase: each task's results are in the report of the phase that ran it)."""
    res: dict[str, Any] = {}
    for report in reports:
        res.update(report["results"])
    m: dict[str, float] = {}
    realism = res.get("realism", {}).get("checks", {})
    if "background" in realism:
        m["eval_background_rms"] = realism["background"]["synthetic_rms"]
        m["eval_background_nonzero_fraction"] = realism["background"]["synthetic_fraction_nonzero"]
    for mod, r in realism.get("power_spectrum", {}).get("per_modality", {}).items():
        m[f"spectrum_max_abs_log10_{mod}"] = r["max_abs_log10_ratio"]
        m[f"spectrum_floor_{mod}"] = r["floor"]
        # the top band is where the shipped model failed (too smooth): its power ratio, synthetic / real
        m[f"spectrum_top_band_ratio_{mod}"] = 10.0 ** r["log10_ratio_per_band"][-1]
    for mod, r in realism.get("intensity_histogram", {}).get("per_modality", {}).items():
        m[f"histogram_w1_{mod}"] = r["wasserstein"]
        m[f"histogram_w1_floor_{mod}"] = r["floor"]
    dist = res.get("image", {}).get("distances", {})
    syn, floor = (dist.get(k, {}).get("3d", {}).get("frechet") for k in ("synthetic_vs_real_train", "real_heldout_vs_real_train"))
    if syn is not None and floor is not None:
        m.update(frechet_3d=syn, frechet_3d_floor=floor, frechet_over_floor=syn / floor if floor > 0 else math.inf)
    tissue = res.get("tissue", {}).get("synthetic_vs_real", {}).get("metrics", {})
    if tissue:
        m["tissue_qc_pass"] = sum(bool(v["pass"]) for v in tissue.values())
        m["tissue_qc_checks"] = len(tissue)
    mem = res.get("memorisation", {}).get("summary")
    if mem:
        m["memorisation_flagged"] = mem["flagged"]
        m["memorisation_cases"] = mem["synthetic_nn_similarity"]["n"]
        m["memorisation_max_similarity"] = mem["synthetic_nn_similarity"]["max"]
        m["memorisation_threshold"] = mem["threshold"]
        m["memorisation_heldout_flagged"] = mem["control_heldout_real"]["flagged"]
    return {k: float(v) for k, v in m.items()}


def seed_config_path(out: Path, seed: int) -> Path:
    return out / "configs" / f"seed{seed}.yaml"


def resolve_configs(args: argparse.Namespace, p: dict, out: Path) -> list[Path]:
    """Every seed's resolved config in OUT/configs/ (before any work: a bad --set is one line, exit 2)."""
    from medidiff.config import ConfigError, load_config, save_resolved

    for o in args.overrides:
        key = o.split("=", 1)[0].strip()
        if "=" not in o or key in OWNED:
            raise ConfigError(f"--set {o}: " + ("expected KEY=VALUE" if "=" not in o else
                                                f"{key} is set by this script per seed ({', '.join(OWNED)})"))
    paths = []
    for s in range(args.seeds):
        cfg = load_config(None, [*overrides(p, out, args.device, args.smoke), *ARMS[ARM], f"seed={s}", f"name=seed{s}",
                                 f"train.max_minutes={args.minutes}", *(["train.max_steps=2"] if args.smoke else [])])
        path = save_resolved(cfg, out / "configs", f"seed{s}.yaml")
        if args.overrides:  # applied to the saved file, so an error names it and the --set, not 40 script keys
            path = save_resolved(load_config(path, args.overrides), out / "configs", f"seed{s}.yaml")
        paths.append(path)
    return paths


def run_seed(args: argparse.Namespace, out: Path, seed: int) -> None:
    """Train one seed, export it, generate its cases and score their background (its own process)."""
    from medidiff.cli.main import main as medidiff_main
    from medidiff.config import load_config

    cfg = load_config(seed_config_path(out, seed))
    log(f"seed {seed}: training for {args.minutes} min")
    trained, model = train_and_export(cfg, out / "models" / f"seed{seed}")
    log(f"seed {seed}: {trained['steps']} steps ({trained['steps_per_s']} steps/s), exported to {model}")
    gen = out / "generated" / f"seed{seed}"
    t0 = time.perf_counter()
    code = medidiff_main(["generate", "--model", str(model), "--num", str(args.generate), "--out", str(gen), "--seed", "0",
                          "--device", args.device, "--overwrite", "--no-progress"])
    if code:
        raise SystemExit(f"seed {seed}: medidiff generate exited {code}")
    gen_seconds = time.perf_counter() - t0
    cases = sorted(d for d in gen.iterdir() if d.is_dir() and d.name.startswith("case_"))
    scores = [background_scores(read_case(c, MODALITIES)) for c in cases]  # generated files are in [0, 1]
    record = {"seed": seed, "model": str(model), **trained, "generate_seconds": round(gen_seconds, 1),
              "generated": len(cases), "background_per_case": scores,
              "background": {k: float(np.mean([sc[k] for sc in scores])) for k in scores[0]},
              "background_rms_max": max(sc["background_rms"] for sc in scores)}
    (out / "seeds").mkdir(exist_ok=True)
    (out / "seeds" / f"seed{seed}.json").write_text(json.dumps(record, indent=2))
    log(f"seed {seed}: {len(cases)} cases in {gen_seconds:.0f} s, background RMS {record['background']['background_rms']:.4f}")


def run_shared_net(args: argparse.Namespace, out: Path, name: str) -> None:
    """Train one of the evaluation's shared nets (SHARED_NETS) once, into OUT/<name> (its own process,
    beside the seeds' training), with the budget the evaluations would give it."""
    from medidiff.cli.evaluate_cmd import load_eval_configs
    from medidiff.eval import train_feature_net, train_tissue_net

    trainer = {"feature_net": train_feature_net, "tissue_net": train_tissue_net}[name]
    exp, cfg = load_eval_configs(str(seed_config_path(out, 0)), None)
    cfg = replace(cfg, seeds=[0], epochs=args.eval_epochs, steps=args.eval_steps, device=args.device)
    t0 = time.perf_counter()
    trainer(exp, cfg, real_manifest=out / "manifest.json", root=out / "data", out_dir=out / name, progress=False)
    log(f"{name} trained in {time.perf_counter() - t0:.0f} s: {out / name}")


def evaluate_command(args: argparse.Namespace, out: Path, seed: int, phase: str) -> list[str]:
    cmd = [sys.executable, "-m", "medidiff", "evaluate", "--real", str(out / "manifest.json"), "--root", str(out / "data"),
           "--synthetic", str(out / "generated" / f"seed{seed}"), "--out", str(eval_dir(out, seed, phase)),
           "--config", str(seed_config_path(out, seed)), "--device", args.device, "--tasks", EVAL_PHASES[phase],
           f"--{SHARED_NETS[phase].replace('_', '-')}", str(out / SHARED_NETS[phase]), "--epochs", str(args.eval_epochs),
           "--seeds", "0", "--no-progress"]
    if args.eval_steps:
        cmd += ["--steps", str(args.eval_steps)]
    if args.smoke:
        cmd += ["--set", "eval.msssim_pairs=5", "--set", "eval.num_examples=1", "--set", "eval.memorisation_controls=4"]
    return cmd


def held_out_cases(out: Path, n: int) -> list[Path]:
    """The first ``n`` held-out (fold 0) case folders of the manifest."""
    from medidiff.data.manifest import load_manifest

    items = [it for it in load_manifest(out / "manifest.json", out / "data", "training") if it.get("fold") == 0]
    return [Path(it["image"][0]).parent for it in items[:n]]


def fmt(s: dict[str, Any], digits: int = 4) -> str:
    """'mean [t95 lo, hi] (min-max)' of summarise_over_seeds."""
    if s["mean"] is None:
        return "n/a"
    text = f"{s['mean']:.{digits}f}"
    if s["t95"] is not None:
        text += f" [{s['t95'][0]:.{digits}f}, {s['t95'][1]:.{digits}f}] ({s['min']:.{digits}f}-{s['max']:.{digits}f})"
    return text


ROWS: list[tuple[str, str, int]] = [
    # (metric key, what it is, digits)
    ("steps", "training steps", 0),
    ("loss_last_200", "loss, last 200 steps", 4),
    ("background_rms", "background RMS outside the head (goal <= 0.02)", 4),
    ("speckle", "speckle (outside voxels > 0.05)", 5),
    ("head_fraction", "head fraction of the grid", 3),
    ("eval_background_rms", "evaluate: background RMS outside the brain", 4),
    ("tissue_qc_pass", "tissue QC checks passed", 1),
    *[(f"spectrum_top_band_ratio_{m}", f"spectrum top band power ratio {m} (goal 0.5-2)", 3) for m in MODALITIES],
    *[(f"spectrum_max_abs_log10_{m}", f"spectrum max abs log10 ratio {m} (goal <= 0.30)", 3) for m in MODALITIES],
    *[(f"histogram_w1_{m}", f"histogram W1 {m}", 3) for m in MODALITIES],
    ("frechet_3d", "Frechet 3D (fixed feature net)", 2),
    ("frechet_3d_floor", "Frechet 3D floor (held-out real)", 2),
    ("frechet_over_floor", "Frechet / floor (goal <= 3)", 2),
    ("memorisation_flagged", "memorisation: cases flagged (goal 0)", 1),
    ("memorisation_max_similarity", "memorisation: max NN similarity", 4),
]


def write_report(record: dict[str, Any], out: Path) -> None:
    seeds = record["seeds"]
    names = [f"seed {s}" for s in seeds]
    lines = [
        "# Quality at scale: the shipped recipe on a larger anatomy set, several seeds",
        "",
        f"- command: `{record['command']}`",
        f"- {record['date']}, {record.get('device', '')}, torch {record.get('torch', '')}",
        f"- data: {record['data']['cases']} anatomy cases {tuple(record['data']['shape'])} (seed 0), fold 0 held out; "
        f"written in {record['data_seconds']} s by {record['workers']} processes",
        f"- training: {len(seeds)} seeds side by side on one device, {record['minutes']} min each; "
        f"config OUT/configs/seed<s>.yaml (quality_ablation's {ARM} arm), extra --set: {record['overrides'] or 'none'}",
        "- evaluate, in phases: " + ", ".join(f"{k} `--tasks {v}`" for k, v in EVAL_PHASES.items())
        + f"; one feature net and one tissue segmenter for every seed ({record['feature_net']}, {record['tissue_net']}), "
        f"segmenter epochs <= {record['eval_epochs']}" + (f", steps <= {record['eval_steps']}" if record["eval_steps"] else "")
        + f", at most {record['eval_minutes']:g} min a phase",
        "- interval: mean [95 % Student t interval over seeds] (min-max over seeds); n = seeds that finished",
        f"- wall clock: data {record['data_seconds']} s, training + export + generation "
        f"{record['train_phase_seconds']} s, evaluation " + (", ".join(
            f"{k} {v['seconds']} s" for k, v in record["eval_phases"].items() if v["seconds"] is not None) or "not run"),
        f"- seed 0's model for benchmarks/pack_pretrained.py: `{out / 'models' / 'seed0'}` (card facts: card_seed0.json)",
        "",
        "| measure | " + " | ".join(names) + " | mean [t95] (min-max) | real (held out) / floor |",
        "|---|" + "---|" * len(names) + "---|---|",
    ]
    real = dict(record.get("real", {}))
    # the real-vs-real floor evaluate measured (held-out vs training cases: the same for every seed)
    for key, floor_key in (("frechet_3d", "frechet_3d_floor"),
                           *[(f"spectrum_max_abs_log10_{m}", f"spectrum_floor_{m}") for m in MODALITIES],
                           *[(f"histogram_w1_{m}", f"histogram_w1_floor_{m}") for m in MODALITIES]):
        if record["summary"].get(floor_key, {}).get("mean") is not None:
            real[key] = record["summary"][floor_key]["mean"]
    for key, what, digits in ROWS:
        per = record["summary"].get(key)
        if per is None:
            continue
        vals = [record["per_seed"].get(str(s), {}).get(key) for s in seeds]
        cells = ["n/a" if v is None else f"{v:.{digits}f}" for v in vals]
        floor = real.get(key)
        lines.append(f"| {what} | " + " | ".join(cells) + f" | {fmt(per, digits)} | "
                     + ("" if floor is None else f"{floor:.{digits}f}") + " |")
    lines += ["", "Per seed: `eval/seed<s>/report.md` (image and memorisation: every check with its rule and floor), "
              "`eval/seed<s>_tissue/report.md` (tissue QC), `seeds/seed<s>.json` (training, generation, background "
              "per case).", ""]
    missing = missing_evaluations(record)
    if missing:
        lines += [f"**Missing evaluations**: {'; '.join(missing)}. Their rows are n/a and left out of the intervals.", ""]
    for s in seeds:
        png = f"seed{s}_vs_real.png"
        if (out / png).exists():
            lines += [f"![seed {s}: generated cases (top row) above held-out real cases (bottom row)]({png})", ""]
    failed = {k: v for k, v in record["exits"].items() if v}
    if failed:
        lines += [f"**Failed steps** (exit codes; logs in `logs/`): {failed}", ""]
    write_atomic(out / "report.md", "\n".join(lines))


def missing_evaluations(record: dict[str, Any]) -> list[str]:
    """'seed <s> <phase> (<state>)' for every evaluation of a trained seed that did not finish."""
    return [f"seed {s} {phase} ({state})" for phase, ph in record["eval_phases"].items()
            for s, state in ph["seeds"].items() if state != "done"]


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` beside ``path`` and rename it over: a job killed while writing keeps the last
    complete file (the report is rewritten after every phase)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def card_draft(record: dict[str, Any], out: Path) -> dict[str, Any]:
    """Facts for ``pack_pretrained.py MODEL --card`` about seed 0's model (a person adds the limits'
    reading and the summary's wording before shipping it)."""
    from medidiff.config import load_config
    from medidiff.files import file_sha256
    from medidiff.training.checkpoint import load_tensors

    s0, m0 = record["seed_records"]["0"], record["per_seed"].get("0", {})
    params = sum(t.numel() for t in load_tensors(Path(s0["model"]) / "model.safetensors").values())
    flagged = {k: int(m0[k]) if k in m0 else "n/a" for k in ("memorisation_flagged", "memorisation_cases")}
    return {
        "name": "anatomy-2mm",
        "summary": f"wavelet flow, x0 target, {params / 1e6:.1f}M params, {record['minutes']:g} min on one {record.get('device', '')} "
                   f"shared by {len(record['seeds'])} seeds, {record['data']['cases']} anatomy cases, "
                   f"{'x'.join(map(str, record['data']['roi']))} at 2 mm",
        "trained": {"card": record.get("device", ""), "date": record["date"][:10], "steps": s0["steps"],
                    "micro_batch": load_config(seed_config_path(out, 0)).train.micro_batch, "minutes": f"{record['minutes']:g} side by side with "
                    f"{len(record['seeds']) - 1} other seeds", "weights": "EMA (max decay 0.999), cast to bf16 for shipping"},
        "commands": [record["command"], f"python benchmarks/pack_pretrained.py {s0['model']} anatomy_2mm --card card_seed0.json"],
        "config": "configs/seed0.yaml of the quality_scale run (and config.json beside the weights)",
        "data": {"set": f"medidiff data anatomy: {record['data']['cases']} cases, seed 0, shape "
                        f"{'x'.join(map(str, record['data']['shape']))}",
                 "manifest": f"build_brats_manifest(name='anatomy', num_folds=4, seed=0); sha256/16 "
                             f"{file_sha256(out / 'manifest.json')[:16]}", "held_out_fold": 0},
        "metrics": {"seed0": m0, "over_seeds": {k: v for k, v in record["summary"].items() if v["n"]},
                    "report": "quality_scale.json / report.md of the run"},
        "limits": [f"memorisation audit: {flagged['memorisation_flagged']} of {flagged['memorisation_cases']} generated "
                   "cases flagged", "no SR stage: 2 mm only",
                   "anatomy from one template: brain-like, not patient-like; not a model of real BraTS data"],
    }


def run_eval_phase(args: argparse.Namespace, out: Path, phase: str, done: Sequence[int], record: dict[str, Any]) -> None:
    """One evaluation phase: ``medidiff evaluate --tasks EVAL_PHASES[phase]`` for every trained seed,
    side by side, for at most ``args.eval_minutes`` in all; its exit codes and per-seed states
    ("done", "failed, exit N", "stopped at the M-min cap", "not run") go into ``record``."""
    log(f"evaluate {phase} (--tasks {EVAL_PHASES[phase]}): seeds {list(done)} side by side, at most "
        f"{args.eval_minutes:g} min")
    t0 = time.perf_counter()
    end = time.monotonic() + 60.0 * args.eval_minutes
    cmds = {f"eval_seed{s}_{phase}": evaluate_command(args, out, s, phase) for s in done}
    exits = {}
    net = SHARED_NETS[phase]
    if not (out / net / "config.json").is_file() and cmds:
        # its training failed: evaluations started together would each train the net and write it
        # over one another
        log(f"evaluate: no {net}: the first seed trains and saves it first")
        first = next(iter(cmds))
        exits.update(side_by_side({first: cmds.pop(first)}, out / "logs", timeout_s=end - time.monotonic()))
    if cmds and end - time.monotonic() > 0:
        exits.update(side_by_side(cmds, out / "logs", timeout_s=end - time.monotonic()))
    record["exits"].update(exits)
    ph = record["eval_phases"][phase]
    ph["seconds"] = round(time.perf_counter() - t0, 1)
    for s in done:
        code = exits.get(f"eval_seed{s}_{phase}")
        ph["seeds"][str(s)] = ("not run (the phase's cap was spent)" if code is None else "done" if code == 0 else
                               f"stopped at the {args.eval_minutes:g}-min cap" if code == TIMED_OUT else f"failed, exit {code}")


def write_results(record: dict[str, Any], out: Path, done: Sequence[int]) -> None:
    """OUT/quality_scale.json, card_seed0.json and report.md from what is on disk now: every seed's
    training record and the report of every evaluation phase that finished."""
    seeds = record["seeds"]
    per_seed: dict[str, dict[str, float]] = {}
    record["seed_records"] = {}
    bands: dict[str, list[list[float]]] = {}
    for s in seeds:
        m: dict[str, float] = {}
        path = out / "seeds" / f"seed{s}.json"
        if path.exists():
            r = json.loads(path.read_text())
            record["seed_records"][str(s)] = r
            m.update({k: float(r[k]) for k in ("steps", "steps_per_s", "loss_last_200")}, **r["background"])
        reports = phase_reports(out, s) if s in done else {}
        m.update(eval_metrics(*reports.values()))
        per_seed[str(s)] = m
        # per-band spectrum ratios, mean over seeds (the figure of merit the issue states per band)
        ps = reports.get("image", {}).get("results", {}).get("realism", {}).get("checks", {}).get("power_spectrum", {})
        for mod, r in ps.get("per_modality", {}).items():
            bands.setdefault(mod, []).append(r["log10_ratio_per_band"])
    record["per_seed"] = per_seed
    keys = sorted({k for m in per_seed.values() for k in m})
    record["summary"] = {k: summarise_over_seeds([per_seed[str(s)].get(k, math.nan) for s in seeds]) for k in keys}
    record["spectrum_log10_ratio_per_band_mean"] = {mod: np.mean(v, axis=0).tolist() for mod, v in bands.items()}
    record["seed0_model"] = str(out / "models" / "seed0")
    write_atomic(out / "quality_scale.json", json.dumps(record, indent=2))
    if "0" in record["seed_records"]:
        write_atomic(out / "card_seed0.json", json.dumps(card_draft(record, out), indent=2) + "\n")
    write_report(record, out)
    log(f"wrote {out / 'quality_scale.json'} and {out / 'report.md'}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--cases", type=int, help="anatomy cases (default 384; 8 with --smoke)")
    ap.add_argument("--seeds", type=int, default=3, help="training seeds, side by side (default %(default)s)")
    ap.add_argument("--minutes", type=float, default=8.0, help="training budget per seed (default %(default)s)")
    ap.add_argument("--generate", type=int, help="cases generated per seed (default 8; 2 with --smoke)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="config override for every seed, e.g. train.deepspeed=zero1 (repeatable)")
    ap.add_argument("--eval-epochs", type=int, help="most epochs of the feature net and tissue segmenter (default 10; 1 with --smoke)")
    ap.add_argument("--eval-steps", type=int, help="hard cap on their optimiser steps (default none; 2 with --smoke)")
    ap.add_argument("--eval-minutes", type=float, default=6.0,
                    help="most wall time of each evaluation phase; evaluations still running then are stopped and "
                         "reported missing (default %(default)s)")
    ap.add_argument("--workers", type=int, help="processes writing the data set (default: the CPU count, at most 32)")
    ap.add_argument("--device", default="cuda", help="cuda (whichever card CUDA_VISIBLE_DEVICES shows) or cpu")
    ap.add_argument("--smoke", action="store_true", help="tiny cases, 2 steps, tiny evaluation: checks it runs (CPU)")
    ap.add_argument("--seed-run", type=int, help=argparse.SUPPRESS)  # internal: one seed's process
    ap.add_argument("--shared-net-run", choices=sorted(SHARED_NETS.values()), help=argparse.SUPPRESS)  # internal
    args = ap.parse_args()
    p = dict(SMOKE if args.smoke else FULL)
    p["cases"] = args.cases or (8 if args.smoke else 384)
    args.generate = args.generate or (2 if args.smoke else 8)
    args.eval_epochs = args.eval_epochs or (1 if args.smoke else 10)
    args.eval_steps = args.eval_steps or (2 if args.smoke else None)
    workers = args.workers or min(os.cpu_count() or 1, 32)
    for name, v in (("--cases", p["cases"]), ("--seeds", args.seeds), ("--generate", args.generate),
                    ("--eval-epochs", args.eval_epochs), ("--workers", workers)):
        if v < 1:
            ap.error(f"{name} must be >= 1, got {v}")
    for name, v in (("--minutes", args.minutes), ("--eval-minutes", args.eval_minutes)):
        if v <= 0:
            ap.error(f"{name} must be > 0, got {v}")
    out = Path(args.out).absolute()
    if args.seed_run is not None:
        run_seed(args, out, args.seed_run)
        return 0
    if args.shared_net_run:
        run_shared_net(args, out, args.shared_net_run)
        return 0

    out.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {
        "run": "quality_scale", "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "data": dict(p), "workers": workers,
        "seeds": list(range(args.seeds)), "minutes": args.minutes, "generate": args.generate, "overrides": args.overrides,
        "eval_epochs": args.eval_epochs, "eval_steps": args.eval_steps, "eval_minutes": args.eval_minutes, "arm": ARM,
        **device_info(args.device),
    }
    resolve_configs(args, p, out)
    log(f"data: {p['cases']} anatomy cases {p['shape']} in {workers} processes")
    record["data_seconds"] = round(make_anatomy_data(out, p, workers=workers), 1)
    log(f"data: done in {record['data_seconds']} s")
    record["real"] = real_scores(out, p, args.generate)
    me = [sys.executable, str(Path(__file__).resolve()), "--out", str(out), "--minutes", str(args.minutes), "--device",
          args.device, "--generate", str(args.generate), "--eval-epochs", str(args.eval_epochs), *(["--smoke"] if args.smoke else []),
          *(["--eval-steps", str(args.eval_steps)] if args.eval_steps else [])]
    log(f"train: {args.seeds} seeds side by side for {args.minutes} min each, and the evaluation's "
        + " and ".join(SHARED_NETS.values()))
    t0 = time.perf_counter()
    exits = side_by_side({**{f"seed{s}": [*me, "--seed-run", str(s)] for s in range(args.seeds)},
                          **{net: [*me, "--shared-net-run", net] for net in SHARED_NETS.values()}}, out / "logs")
    record["train_phase_seconds"] = round(time.perf_counter() - t0, 1)
    done = [s for s in range(args.seeds) if exits[f"seed{s}"] == 0]
    for s in done:
        r = json.loads((out / "seeds" / f"seed{s}.json").read_text())
        log(f"seed {s}: {r['steps']} steps ({r['steps_per_s']}/s), loss {r['loss_last_200']:.4f}, background RMS "
            f"{r['background']['background_rms']:.4f}, speckle {r['background']['speckle']:.5f}")
    record["exits"] = exits
    record.update({net: str(out / net) for net in SHARED_NETS.values()})
    record["eval_phases"] = {phase: {"tasks": tasks, "seconds": None, "seeds": {str(s): "not finished" for s in done}}
                             for phase, tasks in EVAL_PHASES.items()}
    for s in done:
        comparison_figure(sorted(d for d in (out / "generated" / f"seed{s}").iterdir() if d.is_dir())[:4],
                          held_out_cases(out, 4), out / f"seed{s}_vs_real.png")
    write_results(record, out, done)  # training's results land before any evaluation runs
    for phase in EVAL_PHASES:
        run_eval_phase(args, out, phase, done, record)
        write_results(record, out, done)
    print((out / "report.md").read_text(), flush=True)
    return 0 if not any(record["exits"].values()) else 1


if __name__ == "__main__":
    from medidiff.cli.common import run_script

    raise SystemExit(run_script(main))
