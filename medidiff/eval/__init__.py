"""Evaluation of synthetic data: segmentation utility and mask fidelity, image metrics, and a
memorisation audit, written as one report folder (``medidiff evaluate``).

:func:`run_evaluation` is the entry point; the parts live in their own modules:
:mod:`~medidiff.eval.data` (real + synthetic cases on one grid), :mod:`~medidiff.eval.segmentation`
(SegResNet, Dice/HD95), :mod:`~medidiff.eval.utility`, :mod:`~medidiff.eval.stats` (bootstrap
intervals), :mod:`~medidiff.eval.image_metrics`, :mod:`~medidiff.eval.realism` (checks grain and
collapse fail), :mod:`~medidiff.eval.features`, :mod:`~medidiff.eval.memorisation`,
:mod:`~medidiff.eval.tissue`, :mod:`~medidiff.eval.codec`, :mod:`~medidiff.eval.report`.

Before any work, :func:`medidiff.data.mask_sources.check_synthetic_provenance` refuses a synthetic
set whose conditioning masks came from the held-out fold, or whose model trained on another
manifest or fold: every utility number would otherwise be measured on leaked test labels.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from medidiff.data.brats import regions_to_labels
from medidiff.data.config import check_scale_labels, intensity_scale
from medidiff.data.mask_sources import check_synthetic_provenance
from medidiff.eval.config import TASKS, EvalConfig

__all__ = ["EvalConfig", "MemorisationReference", "TASKS", "memorisation_reference_for", "memorisation_results_for",
           "real_reference_for", "realism_checks_for", "run_evaluation", "train_feature_net", "train_tissue_net"]

log = logging.getLogger(__name__)

DEFINITIONS = [
    "Regions: WT = labels {1,2,3}, TC = {1,3}, ET = {3} (BraTS 2023 labels).",
    "Dice (monai DiceMetric, ignore_empty=False): empty truth and empty prediction = 1; exactly one empty = 0.",
    "HD95 (monai HausdorffDistanceMetric, percentile 95, mm): both empty = 0; exactly one empty is undefined "
    "and scored as the volume diagonal in mm (BraTS-style penalty); 'HD95 penalised' counts those cases "
    "(summed over seeds).",
    "Std over seeds uses ddof=1 (0 for one seed).",
    "95% intervals: two-way percentile bootstrap of the mean, resampling test cases and seeds with replacement "
    "(eval.bootstrap resamples); paired differences resample (case, seed) pairs of the two training sets.",
    "Floor: the same number for real held-out vs real training cases at the same counts (what two real samples give).",
    "Non-finite numbers are written to report.json as the strings 'inf', '-inf', 'nan'.",
]


def run_evaluation(
    experiment: Any,
    cfg: EvalConfig,
    *,
    real_manifest: str | Path,
    synthetic_dir: str | Path,
    out_dir: str | Path,
    root: str | Path | None = None,
    command: str = "",
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate ``synthetic_dir`` against the real cases of ``real_manifest``; write the report.

    ``experiment`` is the :class:`~medidiff.experiment.ExperimentConfig` whose ``data`` section
    defines the shared grid and intensity scaling (use the config the model was trained with).
    Returns the report dict (also in ``out_dir/report.json``).
    """
    import torch

    from medidiff import __version__
    from medidiff.config import ConfigError, to_dict
    from medidiff.data.transforms import build_transforms, output_shape
    from medidiff.errors import DataError
    from medidiff.eval import data as evdata
    from medidiff.eval import features as feat
    from medidiff.eval import report as rep
    from medidiff.eval.utility import SegmenterBank, mask_fidelity, training_sets, utility_experiment

    tasks = list(cfg.tasks)
    out = Path(out_dir)
    dcfg = evdata.eval_data_config(experiment.data, cfg.intensity_scale)
    shape = output_shape(dcfg)
    spacing = [float(s) * dcfg.downsample for s in dcfg.spacing]
    needs_segmenter = bool({"utility", "fidelity"} & set(tasks)) or (
        ("image" in tasks or ("memorisation" in tasks and cfg.memorisation_space == "features")) and not cfg.feature_weights
    )
    if needs_segmenter and any(s % 8 for s in shape):
        raise ConfigError(f"the evaluation SegResNet halves the grid 3 times: data.roi // data.downsample = {shape} "
                          "must be a multiple of 8 (set data.roi) or give --feature-weights and drop utility/fidelity")
    if cfg.max_real is not None and "memorisation" in tasks:
        raise ConfigError("eval.max_real leaves real training cases out, and the memorisation audit must compare "
                          "every generated case with every one of them: run memorisation without max_real")
    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        raise DataError("--device", f"{cfg.device}: no CUDA device on this machine; use --device cpu")

    # ---- data -------------------------------------------------------------------------------
    from medidiff.data.manifest import manifest_root

    train_items, held_items, label_map = evdata.real_items(real_manifest, root, dcfg.fold)
    if "utility" in tasks and not held_items:
        raise ConfigError("utility tests on held-out real cases: set data.fold (e.g. --set data.fold=0) "
                          "or drop utility from --tasks")
    synth_items = evdata.synthetic_items(synthetic_dir, dcfg.modalities, max_cases=cfg.max_synthetic)
    # before any work: a set made from held-out masks, or by a model that saw the held-out cases,
    # would make every utility number below meaningless (issue 14)
    manifest_sha = evdata.file_sha256(real_manifest)  # hashed once: the report is rebuilt after every task
    leak_check = check_synthetic_provenance(
        [it.get("provenance", {}) for it in synth_items], [Path(it["image"][0]).parent for it in synth_items],
        manifest_sha256=manifest_sha, fold=dcfg.fold,
        case_folds={str(it["case_id"]): it.get("fold") for it in [*train_items, *held_items]}, tasks=tasks)
    labelled = [it for it in synth_items if "label" in it]
    need_labels = bool({"utility", "fidelity"} & set(tasks))
    if need_labels and len(labelled) != len(synth_items):
        first = next(it for it in synth_items if "label" not in it)
        raise DataError(Path(first["image"][0]).parent / evdata.LABEL_FILE,
                        f"missing: {len(synth_items) - len(labelled)} of {len(synth_items)} synthetic cases have no "
                        "seg.nii.gz, which utility and fidelity need; evaluate with --tasks image,memorisation")
    clock = {"last": time.perf_counter()}
    seconds: dict[str, float] = {}  # wall time per stage, in the report: where an evaluation's time goes

    def lap(stage: str) -> None:
        now = time.perf_counter()
        seconds[stage] = round(seconds.get(stage, 0.0) + now - clock["last"], 1)
        clock["last"] = now
        log.info("evaluate: %s done in %.1f s", stage, seconds[stage])

    # eval.max_real: a seeded subset of each real side, after the leak check has seen every case's fold
    in_manifest = {"real_train": len(train_items), "real_heldout": len(held_items)}
    train_items = evdata.seeded_subset(train_items, cfg.max_real, cfg.subset_seed)
    held_items = evdata.seeded_subset(held_items, cfg.max_real, cfg.subset_seed + 1)
    real_tf = build_transforms(dcfg, train=False, label_map=label_map)
    real_train = evdata.load_cases("real_train", train_items, real_tf, with_label=True, progress=progress)
    real_test = evdata.load_cases("real_heldout", held_items, real_tf, with_label=True, progress=progress) if held_items else None
    with_lab = len(labelled) == len(synth_items)
    check_scale_labels(dcfg, with_lab,
                       f"the synthetic set {synthetic_dir} ({len(synth_items) - len(labelled)} cases without a seg)")
    synth_tf = evdata.synthetic_transforms(dcfg, background=cfg.synthetic_background, with_label=with_lab)
    synthetic = evdata.load_cases("synthetic", synth_items, synth_tf, with_label=with_lab, progress=progress)
    lap("load cases")

    sweep_notes: list[str] = []
    if "utility" in tasks:
        sets, sweep_notes = training_sets(real_train, synthetic, cfg.size_sweep, seed=cfg.subset_seed,
                                            match_tumour_free=cfg.utility_match_tumour_free)
    else:
        sets = {"real": real_train}
    bank = SegmenterBank(sets, cfg, progress=progress)
    # utility's "real" row is the baseline of "real + synthetic >= real": a saved segmenter trained on
    # other real cases (every training case, where eval.max_real took a subset) would not be that baseline
    _preload_real_segmenter(bank, cfg, dcfg, manifest_sha,
                            same_cases=real_train.case_ids if "utility" in tasks else None)
    results: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    figures: list[str] = []
    legends: dict[str, str] = {}
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.partial.json").unlink(missing_ok=True)  # an earlier stopped run's, not this one's
    regions = ["WT", "TC", "ET"]
    feature_net = None

    def build_report() -> dict[str, Any]:
        return {
            "command": command,
            "medidiff_version": __version__,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "tasks": tasks,
            "seeds": list(cfg.seeds),
            "feature_net": feature_net.name if feature_net is not None else None,
            "data": {
                "manifest": str(Path(real_manifest).absolute()),
                "manifest_sha256": manifest_sha,
                "root": str(manifest_root(real_manifest, root)),
                "fold": dcfg.fold,
                "synthetic_dir": str(Path(synthetic_dir).absolute()),
                "cases": {"real_train": len(real_train), "real_heldout": len(real_test) if real_test is not None else 0,
                          "synthetic": len(synthetic)},
                "cases_in_manifest": in_manifest,  # more than "cases" with eval.max_real
                "synthetic_with_labels": len(labelled),
                "provenance_check": leak_check,
                "grid": {"shape": list(shape), "spacing_mm": spacing},
                "case_ids": {"real_train": real_train.case_ids, "real_heldout": real_test.case_ids if real_test else [],
                             "synthetic": synthetic.case_ids},
            },
            "config": {"eval": asdict(cfg), "data": to_dict(dcfg)},
            "results": results,
            "seconds": dict(seconds),
            "skipped": skipped,
            "figures": figures,
            "figure_legends": legends,
            "definitions": DEFINITIONS,
        }

    seconds_seen: set[str] = set()  # results already timed by save_partial's lap

    def save_partial() -> None:
        """report.partial.json: what is measured so far, rewritten after every task, so a run stopped
        part-way (a time cap, a pre-emption) keeps its finished tasks; four evaluations stopped at a
        3.5-min cap on the 2026-11-30 H200 quality run left nothing. report.json replaces it at the end."""
        lap(", ".join(k for k in results if k not in seconds_seen) or "other")
        seconds_seen.update(results)
        partial = build_report()
        done = [t for t in tasks if t in results or t in skipped]
        partial["partial"] = {"finished": done, "pending": [t for t in tasks if t not in done]}
        tmp = out / "report.partial.json.tmp"
        try:
            rep.write_json(tmp, partial)
            os.replace(tmp, out / "report.partial.json")
        except OSError as exc:  # a snapshot must not end an evaluation that can still finish
            log.warning("could not write %s (%s); the evaluation goes on", out / "report.partial.json", exc)

    # ---- segmentation -----------------------------------------------------------------------
    if "utility" in tasks:
        assert real_test is not None
        u = utility_experiment(bank, real_test, cfg, spacing, notes=sweep_notes,
                               predictions=out / "utility_predictions" if cfg.save_predictions else None)
        results["utility"] = u
        save_partial()
        names = list(u["training_sets"])
        for metric, top in (("dice", 1.0), ("hd95", None)):
            iv = [[u["training_sets"][n]["intervals"][r][metric] for n in names] for r in regions]
            means = np.array([[v["mean"] for v in row] for row in iv])
            half = np.array([[max(v["mean"] - v["ci95"][0], v["ci95"][1] - v["mean"]) for v in row] for row in iv])
            fname = f"utility_{metric}.png"
            rep.save_png(out, fname, rep.bar_chart(regions, names, means, half, title=f"{metric} on held-out real",
                                                   ymax=top), figures)
            legends[fname] = (f"{metric.upper()} per region; bars: " + ", ".join(
                f"{rep.COLOURS[i % len(rep.COLOURS)][0]} = trained on {n}" for i, n in enumerate(names)) +
                "; whiskers: the larger half of the 95% bootstrap interval over cases and seeds")
    if "fidelity" in tasks:
        f = mask_fidelity(bank, synthetic, cfg, spacing, real_test)
        results["fidelity"] = f
        save_partial()
        means = np.array([[f["aggregate"][r]["dice_mean"]] for r in regions])
        stds = np.array([[f["aggregate"][r]["dice_std"]] for r in regions])
        rep.save_png(out, "fidelity_dice.png", rep.bar_chart(regions, ["real seg on synthetic"], means, stds,
                                                             title="mask fidelity dice", ymax=1.0), figures)
        legends["fidelity_dice.png"] = "Dice of a real-trained segmenter on synthetic images vs their labels"

    # ---- feature net ------------------------------------------------------------------------
    if "image" in tasks or ("memorisation" in tasks and cfg.memorisation_space == "features"):
        if cfg.feature_weights:
            feature_net = feat.MedicalNetFeatures(cfg.feature_weights, device=cfg.device)
        elif cfg.feature_net and (Path(cfg.feature_net) / "config.json").is_file():
            feature_net = feat.saved_feature_net(cfg.feature_net, dcfg, cfg.device)
        else:
            seed = cfg.seeds[0]
            model = bank.get("real", seed)
            feature_net = feat.SegmenterFeatures(
                model,
                name=f"segresnet-encoder (trained on the real training split, seed {seed}, init_filters "
                     f"{cfg.init_filters}, up to {cfg.epochs} epochs with a plateau stop; stage-wise global average pooling)",
            )
            if cfg.feature_net:  # train once, save with the recipe: later evaluations reuse it
                _save_feature_net(bank, cfg, dcfg, real_manifest, real_train)
                feature_net.name = f"segresnet-encoder {cfg.feature_net} (trained now and saved, seed {seed})"

    if feature_net is not None:
        lap("feature net")

    # ---- image metrics ----------------------------------------------------------------------
    if "image" in tasks:
        assert feature_net is not None
        from medidiff.eval.image_task import ImageReference, image_distances_for, image_realism_for

        image_ref = ImageReference(cfg, feature_net, real_train, real_test)
        realism = image_realism_for(image_ref, synthetic, dcfg.modalities)
        results["realism"] = realism
        spectra = realism.pop("spectra")
        save_partial()  # before the feature-based metrics, which take the longest
        centres = (np.arange(cfg.realism_bands) + 0.5) * 0.5 / cfg.realism_bands
        for c, mod in enumerate(dcfg.modalities):
            fname = f"spectrum_{mod}.png"
            rep.save_png(out, fname, rep.line_chart(
                {"synthetic": (centres, spectra["synthetic"][c]), "real": (centres, spectra["real"][c])},
                title=f"{mod} power in brain", log_y=True), figures)
            legends[fname] = (f"{mod}: radially averaged power inside the brain against spatial frequency (cycles/voxel, "
                              "band centres), log scale; blue synthetic, orange real training; grain lifts the right end")
        img = image_distances_for(image_ref, synthetic)
        dist = img["distances"]
        results["image"] = img
        save_partial()
        fr = [[dist[c][v].get("frechet", np.nan) for c in dist] for v in dist["synthetic_vs_real_train"]]
        variants = list(dist["synthetic_vs_real_train"])
        rep.save_png(out, "frechet.png", rep.bar_chart(variants, list(dist), np.array(fr, np.float64),
                                                       title="frechet distance"), figures)
        legends["frechet.png"] = "Frechet distance per variant; " + ", ".join(
            f"{rep.COLOURS[i][0]} = {c}" for i, c in enumerate(dist))

    # ---- memorisation -----------------------------------------------------------------------
    if "memorisation" in tasks:
        if len(real_train) < 2:
            skipped["memorisation"] = "needs >= 2 real training cases for the reference distribution"
        else:
            reference = memorisation_reference_for(cfg, real_train, real_test, feature_net=feature_net)
            results["memorisation"], a = memorisation_results_for(cfg, reference, synthetic)
            save_partial()
            order = np.argsort(-a.similarity)
            shown = [i for i in order if a.flagged[i]] or list(order)
            shown = shown[: max(cfg.num_examples, 1)]
            pairs = [(synthetic.images[i].numpy(), real_train.images[int(a.nn_index[i])].numpy(),
                      f"{synthetic.case_ids[i]} R {a.similarity[i]:.3f}" + (" FLAGGED" if a.flagged[i] else ""))
                     for i in shown]
            rep.save_png(out, "nn_pairs.png", rep.pair_figure(pairs), figures)
            legends["nn_pairs.png"] = ("left: synthetic case, right: its nearest training case (rows: modalities; "
                                       "columns: axial, coronal, sagittal); " +
                                       ("flagged cases" if a.flagged.any() else "no case flagged: the most similar ones"))

    # ---- tissue QC (anatomy data set) -------------------------------------------------------
    if "tissue" in tasks:
        results_t, note = _tissue_qc(cfg, dcfg, real_manifest, train_items, held_items, real_train, real_test, synthetic,
                                     progress)
        if results_t is None:
            skipped["tissue"] = note
        else:
            results["tissue"] = results_t
            save_partial()

    # ---- codec reconstruction ---------------------------------------------------------------
    if "codec" in tasks:
        if not cfg.codec:
            skipped["codec"] = "no codec given (--codec MODEL_OR_CODEC_DIR or eval.codec)"
        else:
            from medidiff.eval.codec import codec_reconstruction, load_eval_codec

            cases = real_test if real_test is not None else real_train
            rec = codec_reconstruction(load_eval_codec(cfg.codec, cfg.device), cases.images, cases.labels,
                                       dcfg.modalities, case_ids=cases.case_ids, batch_size=cfg.batch_size)
            rec.update({"codec": str(cfg.codec), "set": cases.name})
            results["codec"] = rec
            save_partial()

    # ---- example cases ----------------------------------------------------------------------
    for k in range(min(cfg.num_examples, len(synthetic))):
        lab = regions_to_labels(synthetic.labels[k]) if synthetic.labels is not None else None
        name = f"example_synthetic_{k}.png"
        rep.save_png(out, name, rep.example_figure(synthetic.images[k].numpy(), lab, f"synthetic {synthetic.case_ids[k]}"), figures)
    if cfg.num_examples > 0:
        lab = regions_to_labels(real_train.labels[0]) if real_train.labels is not None else None
        rep.save_png(out, "example_real_0.png", rep.example_figure(real_train.images[0].numpy(), lab,
                                                                   f"real {real_train.case_ids[0]}"), figures)
    legends.update({n: "rows: " + ", ".join(dcfg.modalities) + "; columns: axial, coronal, sagittal; labels: "
                    "red NCR, green ED, yellow ET" for n in figures if n.startswith("example_")})

    lap("example figures")
    report = build_report()
    rep.write_json(out / "report.json", report)
    (out / "report.md").write_text(rep.markdown_report(rep.jsonable(report)))
    (out / "report.partial.json").unlink(missing_ok=True)
    return report


def realism_checks_for(
    cfg: EvalConfig, synthetic: Any, real: Any, heldout: Any = None, *, modalities: Any,
    mask_groups: Any = None, synthetic_labels: Any = None,
) -> dict[str, Any]:
    """:func:`medidiff.eval.realism.realism_checks` with the tolerances and seed of ``cfg`` (the
    image task's call; benchmarks that run the checks alone use it too). ``real`` is the real
    training cases or their :func:`real_reference_for` (then ``heldout`` is already in it): a
    benchmark scoring several synthetic sets against the same real cases builds that once. The
    tumour statistics and tumour contrast checks run with ``synthetic_labels`` against a reference built
    with labels."""
    from medidiff.eval import realism as rl

    if not isinstance(real, rl.RealReference):
        real = real_reference_for(cfg, real, heldout)
    elif heldout is not None:
        raise ValueError("heldout goes into the real reference, not beside it")
    return rl.realism_checks_against(
        synthetic, real, modalities=modalities, mask_groups=mask_groups, background_tol=cfg.background_tol,
        spectrum_log_tol=cfg.spectrum_log_tol, histogram_factor=cfg.histogram_factor,
        histogram_abs_tol=cfg.histogram_abs_tol, diversity_min_ratio=cfg.diversity_min_ratio,
        brain_size_factor=cfg.brain_size_factor, brain_size_abs_tol=cfg.brain_size_abs_tol,
        coherence_tol=cfg.coherence_tol, contrast_abs_tol=cfg.contrast_abs_tol, synthetic_labels=synthetic_labels)


@dataclass
class MemorisationReference:
    """The training side of the memorisation audit (:func:`memorisation_reference_for`): the
    embedding, the training cases' embeddings in every form the audit matches, the held-out cases'
    and the planted controls' rates. None of it depends on the synthetic set, so a benchmark
    auditing several sets against the same training cases builds it once."""

    space: str  # how cases are embedded, in words
    embed: Callable[[Any], Any]  # (N, C, X, Y, Z) images -> (N, D)
    train: Any  # (N, D)
    train_alt: list[Any]  # the other forms of the training cases (mirrored; image space: rotated)
    heldout: Any  # (M, D) held-out real cases (the negative control) or None
    controls: dict[str, Any]  # memorisation.control_rates
    train_ids: list[str]


def memorisation_reference_for(cfg: EvalConfig, real_train: Any, real_test: Any = None, *,
                               feature_net: Any = None) -> MemorisationReference:
    """The audit's training side for ``cfg.memorisation_space`` ("image", or "features" with
    ``feature_net``) from CaseSets of the real training (and held-out) cases."""
    from medidiff.eval import features as feat
    from medidiff.eval import memorisation as mem

    if cfg.memorisation_space == "features":
        if feature_net is None:
            raise ValueError("memorisation in feature space needs the feature net")

        def embed(images: Any) -> Any:
            return feat.extract_features(feature_net, images)

        train = embed(real_train.images)
        alt = [feat.extract_features(feature_net, real_train.images.flip(2))]  # x: left-right
        space = f"features ({feature_net.name})"
    else:
        def embed(images: Any) -> Any:
            return mem.image_embedding(images, cfg.memorisation_size)

        # every form in one pass: the brain masks (most of the cost) are estimated once
        train, *alt = mem.image_embeddings(real_train.images, cfg.memorisation_size,
                                           forms=("plain", "mirror", *mem.ROTATIONS))
        space = f"image (the brain's bounding box at {cfg.memorisation_size}^3 per modality, z-scored)"
    heldout = embed(real_test.images) if real_test is not None and len(real_test) else None
    controls = mem.control_rates(embed, real_train.images, real_test.images if heldout is not None else None,
                                 percentile=cfg.memorisation_percentile, margin=cfg.memorisation_margin,
                                 max_cases=cfg.memorisation_controls, seed=cfg.subset_seed, train_embeddings=(train, alt),
                                 heldout_embedding=heldout)
    return MemorisationReference(space, embed, train, alt, heldout, controls, list(real_train.case_ids))


def memorisation_results_for(cfg: EvalConfig, reference: MemorisationReference, synthetic: Any) -> tuple[dict[str, Any], Any]:
    """The memorisation task's results for the CaseSet ``synthetic`` against ``reference`` (as
    evaluate's report has them), and the :class:`~medidiff.eval.memorisation.MemorisationResult`."""
    from medidiff.eval import memorisation as mem

    ref = reference
    a = mem.audit(ref.train, ref.embed(synthetic.images), percentile=cfg.memorisation_percentile,
                  margin=cfg.memorisation_margin, train_alt=ref.train_alt, control=ref.heldout)
    results = {
        "space": ref.space,
        "rule": (f"flagged when 1 - r < {cfg.memorisation_margin} x (1 - r_q), r = Pearson similarity to the "
                 "nearest training case (as it is, left-right mirrored" + (", or rotated by +-5 or +-10 degrees in "
                 "any plane" if cfg.memorisation_space == "image" else "") + f"), r_q = {cfg.memorisation_percentile}th "
                 "percentile of the training cases' own nearest-neighbour similarities (matched the same way)"),
        "percentile": cfg.memorisation_percentile,
        "margin": cfg.memorisation_margin,
        "summary": a.summary(),
        "controls": ref.controls,
        "cases": [{"case": synthetic.case_ids[i], "nearest": ref.train_ids[int(a.nn_index[i])],
                   "similarity": float(a.similarity[i]), "flagged": bool(a.flagged[i])}
                  for i in range(len(synthetic))],
    }
    return results, a


def _seeded_cases(cases: Any, n: int | None, seed: int) -> Any:
    """At most ``n`` of ``cases`` (an :class:`~medidiff.eval.data.CaseSet`): the seeded choice that
    ``eval.max_real = n`` would have loaded from the same cases; ``cases`` itself (no copy) where that
    is all of them."""
    from medidiff.eval import data as evdata

    keep = evdata.seeded_indices(len(cases), n, seed)
    return cases if len(keep) == len(cases) else cases.subset(keep)


def real_reference_for(cfg: EvalConfig, real: Any, heldout: Any = None, *, real_labels: Any = None,
                       heldout_labels: Any = None) -> Any:
    """The real side of the realism checks (:class:`medidiff.eval.realism.RealReference`) with the
    bands, diversity sigma and seed of ``cfg`` (with the real labels: the tumour statistics too)."""
    from medidiff.eval import realism as rl

    return rl.real_reference(real, heldout, bands=cfg.realism_bands, diversity_sigma=cfg.diversity_sigma,
                             seed=cfg.seeds[0], real_labels=real_labels, heldout_labels=heldout_labels)


def train_feature_net(
    experiment: Any,
    cfg: EvalConfig,
    *,
    real_manifest: str | Path,
    out_dir: str | Path,
    root: str | Path | None = None,
    progress: bool = True,
) -> Path:
    """Train the feature net :func:`run_evaluation` would train (the real-trained segmenter of seed
    ``cfg.seeds[0]``) and save it to ``out_dir`` with its recipe, without any synthetic cases.

    Several evaluations of one data set (models, seeds) then load it with ``eval.feature_net`` and
    their Frechet/MMD values compare on the same features; training it first, once, also lets
    those evaluations run side by side.
    """
    from medidiff.eval.utility import SegmenterBank

    dcfg, _, real_train = _real_training_cases(experiment, cfg, real_manifest, root, progress)
    bank = SegmenterBank({"real": real_train}, cfg, progress=progress)
    bank.get("real", cfg.seeds[0])
    return _save_feature_net(bank, replace(cfg, feature_net=str(out_dir)), dcfg, real_manifest, real_train)


def train_tissue_net(
    experiment: Any,
    cfg: EvalConfig,
    *,
    real_manifest: str | Path,
    out_dir: str | Path,
    root: str | Path | None = None,
    progress: bool = True,
) -> Path:
    """Train the tissue segmenter :func:`run_evaluation`'s tissue task would train (seed
    ``cfg.seeds[0]``, on the real training cases' tissue maps) and save it to ``out_dir`` with its
    recipe, without any synthetic cases; evaluations given ``eval.tissue_net`` load it.

    It sees no synthetic case, so it is the same instrument for every synthetic set of the data set:
    training it once instead of per evaluation saved the largest part of an evaluation on the
    2 x H200 quality run (three evaluations side by side, each training its own).
    """
    from medidiff.config import ConfigError
    from medidiff.eval import tissue as ts

    dcfg, train_items, real_train = _real_training_cases(experiment, cfg, real_manifest, root, progress)
    t_train = ts.tissue_items(train_items)
    if t_train is None:
        raise ConfigError(f"the tissue segmenter needs CASE{ts.TISSUE_SUFFIX} tissue maps beside every real training "
                          "case (the anatomy data set has them)")
    _tissue_segmenter(replace(cfg, tissue_net=str(out_dir)), dcfg, real_manifest, real_train, t_train, progress)
    return Path(out_dir)


def _real_training_cases(experiment: Any, cfg: EvalConfig, real_manifest: str | Path, root: str | Path | None,
                         progress: bool) -> tuple[Any, list[dict[str, Any]], Any]:
    """(evaluation data config, training items, loaded training cases) of the manifest's training folds."""
    from medidiff.data.transforms import build_transforms
    from medidiff.eval import data as evdata

    dcfg = evdata.eval_data_config(experiment.data, cfg.intensity_scale)
    train_items, _, label_map = evdata.real_items(real_manifest, root, dcfg.fold)
    real_train = evdata.load_cases("real_train", train_items, build_transforms(dcfg, train=False, label_map=label_map),
                                   with_label=True, progress=progress)
    return dcfg, train_items, real_train


def _preload_real_segmenter(bank: Any, cfg: EvalConfig, dcfg: Any, manifest_sha256: str,
                            same_cases: Sequence[str] | None = None) -> bool:
    """Give the bank the saved real-trained segmenter of ``eval.feature_net`` when it is the one this
    evaluation would train (same manifest, held-out fold, grid, spacing, modalities, and a seed of
    ``cfg.seeds``; with ``same_cases``, also trained on exactly those cases): mask fidelity and utility
    then reuse it instead of training it again. Returns whether it did; a folder that does not match is
    left to the feature-net step, which refuses it."""
    from medidiff.errors import DataError
    from medidiff.eval import features as feat
    from medidiff.eval.segmentation import TrainingHistory

    if not cfg.feature_net or not (Path(cfg.feature_net) / "config.json").is_file():
        return False
    try:
        model, recipe = feat.segmenter_features_for(cfg.feature_net, dcfg)
    except DataError:
        return False
    if (recipe.get("manifest_sha256") != manifest_sha256 or recipe.get("fold") != dcfg.fold
            or recipe.get("seed") not in cfg.seeds or "training" not in recipe):
        return False
    if same_cases is not None and sorted(recipe.get("train_cases") or []) != sorted(same_cases):
        log.info("evaluate: the saved real segmenter was trained on %d cases, not this evaluation's %d: "
                 "utility trains its own", len(recipe.get("train_cases") or []), len(same_cases))
        return False
    bank.put("real", int(recipe["seed"]), model.to(cfg.device), TrainingHistory(**recipe["training"]))
    return True


def _save_feature_net(bank: Any, cfg: EvalConfig, dcfg: Any, real_manifest: str | Path, real_train: Any) -> Path:
    """Save the bank's real-trained segmenter of seed ``cfg.seeds[0]`` to ``cfg.feature_net`` with the
    recipe :func:`medidiff.eval.features.load_segmenter_features` checks (grid, spacing, modalities)."""
    from medidiff import __version__
    from medidiff.config import to_dict
    from medidiff.data.transforms import output_shape
    from medidiff.eval import data as evdata
    from medidiff.eval import features as feat

    assert cfg.feature_net
    seed = cfg.seeds[0]
    spacing = [float(s) * dcfg.downsample for s in dcfg.spacing]
    return feat.save_segmenter_features(bank.get("real", seed), cfg.feature_net, {
        "modalities": list(dcfg.modalities), "grid": list(output_shape(dcfg)), "spacing_mm": spacing,
        "init_filters": cfg.init_filters, "seed": seed, "manifest_sha256": evdata.file_sha256(real_manifest),
        "fold": dcfg.fold, "train_cases": real_train.case_ids, "eval": asdict(cfg), "data": to_dict(dcfg),
        "intensity_scale": intensity_scale(dcfg), "training": asdict(bank.histories[("real", seed)]),
        "medidiff_version": __version__})


def _tissue_map_config(dcfg: Any) -> Any:
    """The pipeline that reads tissue maps in the label's place (only the maps are kept): percentiles over the
    whole brain, as outside_tumour would take every tissue for a tumour (and a constant rim could refuse the case)."""
    return replace(dcfg, label_mode="labels", percentile_region="brain")


def _tissue_qc(cfg: EvalConfig, dcfg: Any, real_manifest: str | Path, train_items: list[dict[str, Any]],
               held_items: list[dict[str, Any]], real_train: Any, real_test: Any, synthetic: Any, progress: bool
               ) -> tuple[dict[str, Any] | None, str]:
    """Tissue fractions and WM/GM contrast of synthetic vs held-out real cases (medidiff.eval.tissue),
    or ``(None, why not)`` when the real cases carry no tissue maps."""
    from medidiff.data.transforms import build_transforms
    from medidiff.eval import tissue as ts

    t_train, t_held = ts.tissue_items(train_items), ts.tissue_items(held_items)
    if t_train is None or t_held is None or real_test is None:
        return None, (f"needs CASE{ts.TISSUE_SUFFIX} tissue maps beside every real case (the anatomy data set has "
                      "them) and a held-out fold")
    model, segmenter = _tissue_segmenter(cfg, dcfg, real_manifest, real_train, t_train, progress)
    maps_held = ts.load_tissue_maps(t_held, build_transforms(_tissue_map_config(dcfg), train=False, label_map={}))
    model = model.to(cfg.device)
    mods = list(dcfg.modalities)
    pred_held = ts.predict_tissue(model, real_test.images, batch_size=cfg.batch_size)
    pred_syn = ts.predict_tissue(model, synthetic.images, batch_size=cfg.batch_size)
    real_pred = ts.tissue_measures(real_test.images, pred_held, mods)
    real_truth = ts.tissue_measures(real_test.images, maps_held, mods)
    syn = ts.tissue_measures(synthetic.images, pred_syn, mods)
    agree = float((pred_held == maps_held).float().mean())
    return {
        "segmenter": {**segmenter, "voxel_agreement_on_heldout": agree},
        "synthetic_vs_real": ts.compare_to_real(syn, real_pred),
        "real_heldout_ground_truth": {k: float(np.nanmean(v)) for k, v in real_truth.items()},
        "per_case": {"synthetic": {"case_ids": synthetic.case_ids, **{k: v.tolist() for k, v in syn.items()}},
                     "real_heldout": {"case_ids": real_test.case_ids, **{k: v.tolist() for k, v in real_pred.items()}}},
    }, ""


def _refuse_sigmoid_tissue_net(path: Path) -> None:
    """A tissue segmenter saved before 2026-11-30 had a sigmoid per class and never predicted CSF:
    say so, rather than "trained for exclusive None"."""
    import json

    from medidiff.errors import DataError
    from medidiff.eval import tissue as ts

    try:
        meta = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return  # load_segmenter names the problem
    if meta.get("kind") == ts.TISSUE_NET_KIND and "exclusive" not in meta.get("recipe", {}):
        raise DataError(path, "a tissue segmenter saved before 2026-11-30 (a sigmoid per class, which never predicted "
                              "CSF): retrain it (give --tissue-net an empty folder) or drop --tissue-net")


def _tissue_segmenter(cfg: EvalConfig, dcfg: Any, real_manifest: str | Path, real_train: Any,
                      t_train: list[dict[str, Any]], progress: bool) -> tuple[Any, dict[str, Any]]:
    """The tissue segmenter and ``{"training": its history, "source": where it came from}``: loaded
    from ``cfg.tissue_net`` when that folder holds one, else trained on the real training cases'
    tissue maps (seed ``cfg.seeds[0]``) and, when ``cfg.tissue_net`` is set, saved there."""
    from medidiff import __version__
    from medidiff.config import to_dict
    from medidiff.data.transforms import build_transforms, output_shape
    from medidiff.eval import data as evdata
    from medidiff.eval import tissue as ts
    from medidiff.eval.segmentation import load_segmenter, save_segmenter, train_segmenter

    spacing = [float(s) * dcfg.downsample for s in dcfg.spacing]
    # the held-out fold is the tissue QC's real reference: a net trained on another manifest or fold
    # may have learnt those very cases, and would score them better than any synthetic case
    # exclusive: a softmax over background + CSF/GM/WM; a saved sigmoid net (before 2026-11-30's fix) never
    # predicted CSF and is refused
    expect = {"modalities": list(dcfg.modalities), "grid": list(output_shape(dcfg)), "spacing_mm": spacing,
              "manifest_sha256": evdata.file_sha256(real_manifest), "fold": dcfg.fold, "exclusive": True,
              "intensity_scale": intensity_scale(dcfg)}
    if cfg.tissue_net and (Path(cfg.tissue_net) / "config.json").is_file():
        _refuse_sigmoid_tissue_net(Path(cfg.tissue_net) / "config.json")
        model, recipe = load_segmenter(cfg.tissue_net, kind=ts.TISSUE_NET_KIND, expect=expect, what="tissue segmenter",
                                       option="--tissue-net")
        return model, {"training": recipe["training"], "source": f"loaded from {cfg.tissue_net} (seed {recipe['seed']})"}
    seed = cfg.seeds[0]
    maps_train = ts.load_tissue_maps(t_train, build_transforms(_tissue_map_config(dcfg), train=False, label_map={}))
    model, hist = train_segmenter(
        real_train.images, ts.tissue_onehot(maps_train), epochs=cfg.epochs, batch_size=cfg.batch_size, seed=seed,
        lr=cfg.lr, weight_decay=cfg.weight_decay, init_filters=cfg.init_filters, val_fraction=cfg.val_fraction,
        patience=cfg.patience, min_delta=cfg.min_delta, max_steps=cfg.steps, threshold=cfg.threshold, exclusive=True,
        device=cfg.device, progress=progress, desc=f"tissue segmenter seed {seed}")
    source = f"trained now, seed {seed}"
    if cfg.tissue_net:  # train once, save with the recipe: later evaluations load it
        save_segmenter(model, cfg.tissue_net, kind=ts.TISSUE_NET_KIND, recipe={
            **expect, "init_filters": cfg.init_filters, "seed": seed, "train_cases": real_train.case_ids,
            "eval": asdict(cfg), "data": to_dict(dcfg), "training": asdict(hist), "medidiff_version": __version__})
        source += f", saved to {cfg.tissue_net}"
    return model, {"training": asdict(hist), "source": source}


def _mask_id(prov: dict[str, Any]) -> str | None:
    """The conditioning mask a synthetic case was made from (for same-mask diversity), if recorded."""
    src = prov.get("mask")
    if isinstance(src, dict):  # medidiff.io.source_record, or a label-map file's hash
        return "#".join(str(src.get(k)) for k in ("manifest_sha256", "case_id_sha256", "file_sha256"))
    return str(src) if src else None
