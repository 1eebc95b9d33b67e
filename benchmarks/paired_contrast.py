"""A mask-conditioned model's tumour contrast, paired: each generated case against the real training case whose
label map it was drawn for, each side read with its own copy of that label map, per modality, on the brain and the
outside-the-tumour scale (quality_scale's two). Why: the unpaired realism rows compare two sets' medians, so a
model that overshoots an enhancing tumour's brightness and a first stage whose labels differ from real ones read
alike (quality_scale_h200_20261204f: t2f's ET 0.3-0.4 too bright for the joint model's labels). Paired on real
masks, a difference is the image model's own.

    python benchmarks/paired_contrast.py --model MODEL --config CONFIG --manifest MANIFEST [--root ROOT] \\
        --num 16 --out OUT [--generated DIR | --control] [--sampler heun] [--device cpu] [--mask-folds 1 2 3]

MODEL: a mask-conditioned model folder (or a short name); CONFIG: the experiment it was trained with (its
resolved_config.yaml, or quality_scale's OUT/configs/<run>.yaml); MANIFEST: its data. Generates ``--num`` cases
for the masks of the training folds (``medidiff generate --masks MANIFEST --keep-source-ids``: never the held-out
fold's), unless ``--generated`` names a folder written so before; ``--control`` reads a perfect generator instead
(:func:`write_control`: what the reading gives when nothing is wrong). Writes OUT/paired_contrast.json and .md.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality_common import _RealCases  # noqa: E402
from quality_scale import eval_scale_overrides, normal_brain_scale_overrides, summarise_over_seeds  # noqa: E402

READINGS = ("et_contrast", "et_upper", "top_in_tumour", "ncr_contrast", "ed_contrast")
# "brain" was "shipped" in records before 2026-12-07 (the shipped model's scale until then)
SCALES = {"brain": eval_scale_overrides, "outside_tumour": normal_brain_scale_overrides}


def paired_contrast(generated: Any, generated_labels: Any, real: Any, real_labels: Any,
                    modalities: list[str]) -> dict[str, Any]:
    """(N, C, X, Y, Z) generated and real images in [-1, 1] with their (N, 3, X, Y, Z) WT/TC/ET labels (case i's
    generated label map is the real case i's, drawn for; each side through the evaluation pipeline, which crops
    each case to its own brain box, so each side reads its own copy) -> per reading of
    :func:`medidiff.eval.realism.tumour_contrast` and modality: the generated and the real median over cases and
    the per-case difference (generated - real): its mean with a 95 % Student t interval and its median; cases where
    either side reads nan (no ET) are left out. ``label_agreement``: per case, the Dice of the two sides' WT after
    their pipelines (1 when the crops agree; lower means the comparison is not of the same voxels)."""
    from medidiff.eval.realism import brain_masks, tumour_contrast

    gl, rl = np.asarray(generated_labels) > 0.5, np.asarray(real_labels) > 0.5
    gm, rm = brain_masks(generated), brain_masks(real)  # each side's, once for both readings
    gen = tumour_contrast(generated, gm, gl)
    ref = tumour_contrast(real, rm, rl)
    inter = (gl[:, 0] & rl[:, 0]).reshape(len(gl), -1).sum(1)
    total = gl[:, 0].reshape(len(gl), -1).sum(1) + rl[:, 0].reshape(len(rl), -1).sum(1)
    dice = np.where(total > 0, 2 * inter / np.maximum(total, 1), 1.0)
    out: dict[str, Any] = {"label_agreement": {"wt_dice_min": float(dice.min()) if dice.size else None,
                                               "wt_dice_median": _median(dice)},
                           "stray": {}}
    where = [stray_where(x, lab, modalities, masks=m) for x, lab, m in ((generated, gl, gm), (real, rl, rm))]
    for key in ("at_edge", "to_wt"):
        out["stray"][key] = {mod: {"generated_median": _median(g), "real_median": _median(r),
                                   "n_generated": int(g.size), "n_real": int(r.size)}
                             for mod, g, r in zip(modalities, where[0][key], where[1][key])}
    for reading in READINGS:
        out[reading] = {}
        for c, mod in enumerate(modalities):
            g, r = gen[reading][:, c], ref[reading][:, c]
            both = np.isfinite(g) & np.isfinite(r)
            d = g[both] - r[both]
            out[reading][mod] = {"n": int(both.sum()), "generated_median": _median(g[both]),
                                 "real_median": _median(r[both]), "difference_median": _median(d),
                                 "difference": summarise_over_seeds(d.tolist())}
    return out


EDGE_LAYERS = 2  # the brain's outer voxel layers (the generated CSF-like shell lives in two: csf_where_cpu_20261202)


def stray_where(images: Any, labels: np.ndarray, modalities: list[str], *,
                masks: np.ndarray | None = None) -> dict[str, list[np.ndarray]]:
    """Per modality, per case with any: where the brain's brightest 0.5 % that lie outside the tumour (WT dilated
    2 voxels, as tumour_contrast) are: ``at_edge``, their share within the brain's outer ``EDGE_LAYERS`` voxel
    layers; ``to_wt``, their median distance to WT in voxels (cases with a tumour). The shipped model's t1c strays sit
    mostly 3-6 voxels from its label (the enhancing tissue drawn past it) and in a few cases 9-25 voxels away
    (an unlabelled enhancing spot): stray_bright_cpu_20261204."""
    from scipy import ndimage

    from medidiff.eval.realism import TOP_QUANTILE, brain_masks

    x = np.asarray(images, dtype=np.float32)
    masks = brain_masks(x) if masks is None else masks
    out: dict[str, list[list[float]]] = {"at_edge": [[] for _ in modalities], "to_wt": [[] for _ in modalities]}
    for i in range(len(x)):
        brain, wt = masks[i], np.asarray(labels[i, 0]) > 0.5
        if not brain.any():
            continue
        near = ndimage.binary_dilation(wt, iterations=2)
        edge = brain & ~ndimage.binary_erosion(brain, iterations=EDGE_LAYERS)
        to_wt = ndimage.distance_transform_edt(~wt) if wt.any() else None
        for c in range(len(modalities)):
            v = x[i, c]
            stray = brain & (v >= np.quantile(v[brain], TOP_QUANTILE)) & ~near
            if stray.any():
                out["at_edge"][c].append(float((stray & edge).sum() / stray.sum()))
                if wt.any():  # a tumour-free case has no distance to read
                    out["to_wt"][c].append(float(np.median(to_wt[stray])))
    return {k: [np.asarray(v) for v in per_mod] for k, per_mod in out.items()}


def _median(x: np.ndarray) -> float | None:
    return float(np.median(x)) if x.size else None


def generate(args: argparse.Namespace, folder: Path) -> None:
    """``--num`` cases for the training folds' masks, in ``folder`` (``python -m``: the GPU host runs the tree
    without installing it)."""
    cmd = [sys.executable, "-m", "medidiff", "generate", "--model", args.model, "--masks", str(args.manifest), "--num", str(args.num),
           "--keep-source-ids", "--seed", "0", "--out", str(folder), "--device", args.device, "--no-progress",
           "--overwrite"]
    if args.root:
        cmd += ["--root", str(args.root)]
    if args.sampler:
        cmd += ["--sampler", args.sampler]
    if args.mask_folds:  # a manifest other than the model's own (the CPU's copy of the GPU set): generate asks
        cmd += ["--mask-folds", *map(str, args.mask_folds)]
    subprocess.run(cmd, check=True)


def write_control(args: argparse.Namespace, folder: Path) -> None:
    """A perfect generator, the reading's known-good input: each of the first ``--num`` training-fold cases (the
    cases ``generate --masks`` would take, in manifest order) through the model's own data pipeline (its grid and
    intensity scale, clipping included: what the net was trained to reproduce), written as ``generate`` writes a
    case ((x + 1) / 2, background 0, the model grid's native affine) with the source case id in its provenance.
    Read against the raw cases, every difference should be ~0; what is not is the measurement's, not a model's."""
    import dataclasses

    from medidiff.cli.evaluate_cmd import load_eval_configs
    from medidiff.data.brats import regions_to_labels
    from medidiff.data.manifest import label_map_of, read_manifest
    from medidiff.data.mask_sources import select_mask_cases
    from medidiff.data.transforms import build_transforms, output_spacing
    from medidiff.generation import place_in_grid
    from medidiff.io import write_nifti

    data = dataclasses.replace(load_eval_configs(str(args.config), None)[0].data, label_mode="regions")
    items = select_mask_cases(args.manifest, args.root, data, args.mask_folds)
    if len(items) < args.num:  # generate would repeat masks; a control of fewer cases would read as fewer pairs
        raise SystemExit(f"--num {args.num}: {args.manifest} has {len(items)} cases in the chosen folds")
    items = items[: args.num]
    to_grid = build_transforms(data, train=False, label_map=label_map_of(read_manifest(args.manifest)))
    spacing = list(output_spacing(data))
    for i, item in enumerate(items):
        case = to_grid(dict(item))
        out = folder / f"case_{i:04d}"
        prov = {"mask": {"case_id": item["case_id"]}, "control": "real case through the model's data pipeline"}
        for c, mod in enumerate(data.modalities):
            vol, affine = place_in_grid((case["image"][c].numpy() + 1) / 2, spacing, "native")
            write_nifti(out / f"{mod}.nii.gz", vol.astype(np.float32), affine)
        label, affine = place_in_grid(regions_to_labels(case["label"].numpy()), spacing, "native", label=True)
        write_nifti(out / "seg.nii.gz", label.astype(np.uint8), affine, is_label=True)
        (out / "provenance.json").write_text(json.dumps(prov) + "\n")


def source_ids(folder: Path, modalities: list[str]) -> list[str]:
    """The real case each generated case's mask came from, in the order the evaluation loads the folder
    (:func:`medidiff.eval.data.synthetic_items`; ``--keep-source-ids`` records the id in the case's provenance)."""
    from medidiff.eval.data import synthetic_items

    ids = [(it.get("provenance") or {}).get("mask", {}).get("case_id") for it in synthetic_items(folder, modalities)]
    if not ids or not all(ids):
        raise SystemExit(f"{folder}: cases without their mask's case id: generate with --masks MANIFEST --keep-source-ids")
    return [str(i) for i in ids]


def table(result: dict[str, Any]) -> str:
    lines = ["| scale | reading | modality | n | generated median | real median | difference: mean [t95], median |",
             "|---|---|---|---|---|---|---|"]
    fmt = lambda v: "n/a" if v is None else f"{v:+.3f}"  # noqa: E731
    for scale, readings in result["scales"].items():
        for reading, mods in readings.items():
            if reading in ("label_agreement", "stray"):
                continue
            for mod, r in mods.items():
                d = r["difference"]
                ci = f"[{d['t95'][0]:+.3f}, {d['t95'][1]:+.3f}]" if d.get("t95") else "[n/a]"
                lines.append(f"| {scale} | {reading} | {mod} | {r['n']} | {fmt(r['generated_median'])} | "
                             f"{fmt(r['real_median'])} | {fmt(d['mean'])} {ci}, {fmt(r['difference_median'])} |")
    agree = "; ".join(f"{scale}: WT Dice min {r['label_agreement']['wt_dice_min']:.3f}, median "
                      f"{r['label_agreement']['wt_dice_median']:.3f}" for scale, r in result["scales"].items())
    lines.append(f"\nThe two sides' labels after their pipelines (1: the same voxels) -- {agree}")
    lines += ["", "The brain's brightest 0.5 % outside the tumour (WT + 2 voxels): their share in the brain's outer "
              f"{EDGE_LAYERS} voxel layers and their median distance to WT in voxels (median over the cases with "
              "any; generated / real, n cases):", ""]
    for scale, r in result["scales"].items():
        for key, what in (("at_edge", "at the edge"), ("to_wt", "distance to WT")):
            cells = ", ".join(f"{mod} {fmt(v['generated_median'])} / {fmt(v['real_median'])} (n {v['n_generated']} / "
                              f"{v['n_real']})" for mod, v in r["stray"][key].items())
            lines.append(f"- {scale}, {what}: {cells}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="the mask-conditioned model (not with --control)")
    ap.add_argument("--config", type=Path, required=True)
    ap.add_argument("--manifest", type=Path, required=True)
    ap.add_argument("--root", type=Path)
    ap.add_argument("--num", type=int, default=16)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--generated", type=Path, help="a folder generate --masks MANIFEST --keep-source-ids wrote")
    ap.add_argument("--control", action="store_true",
                    help="read a perfect generator instead of --model: the real cases through the model's data "
                         "pipeline (every difference should be ~0)")
    ap.add_argument("--sampler", choices=["euler", "heun"], help="default: the model's")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--mask-folds", type=int, nargs="+",
                    help="the folds the model trained on, when MANIFEST is not its data.manifest (generate's flag)")
    args = ap.parse_args(argv)
    if not args.model and not args.control:
        raise SystemExit("--model is needed (or --control)")
    if args.num < 2:
        raise SystemExit("--num must be >= 2 (an interval needs two cases)")
    args.out.mkdir(parents=True, exist_ok=True)
    folder = args.generated or args.out / "generated"
    if args.control:
        if args.generated:
            raise SystemExit("--control reads its own perfect generator: not with --generated")
        folder = args.out / "control"
        shutil.rmtree(folder, ignore_errors=True)  # no cases of an earlier --num or --config mixed in
        write_control(args, folder)
    elif args.generated is None:
        generate(args, folder)
    root = args.root or args.manifest.parent
    result: dict[str, Any] = {"model": "control: the real cases through the model's data pipeline" if args.control
                              else args.model, "config": str(args.config), "manifest": str(args.manifest),
                              "generated": str(folder), "scales": {}}
    from medidiff.cli.evaluate_cmd import load_eval_configs

    modalities = list(load_eval_configs(str(args.config), None)[0].data.modalities)
    result["cases"] = ids = source_ids(folder, modalities)
    for scale, overrides in SCALES.items():
        real = _RealCases(args.config, args.manifest, root, None, overrides(), train_ids=ids)
        gen = real.synthetic(folder)
        if len(gen) != len(ids):
            raise SystemExit(f"{folder}: {len(gen)} cases loaded against {len(ids)} mask ids")
        result["scales"][scale] = paired_contrast(gen.images, gen.labels, real.train.images, real.train.labels,
                                                  modalities)
    write_result(args.out, "paired_contrast", result, table(result))
    return 0


def write_result(out: Path, stem: str, result: dict[str, Any], text: str) -> None:
    """OUT/<stem>.json (every number) and OUT/<stem>.md (the table, also printed)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / f"{stem}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    sys.exit(main())
