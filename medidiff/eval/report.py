"""The evaluation report: ``report.json``, ``report.md`` and PNG figures in one folder.

Figures are drawn with numpy into RGB arrays and written by :func:`medidiff.viz.write_png`, so
evaluation needs no plotting library: bar charts (mean bar, std whisker, labels in viz's built-in 3x5 pixel
font), example cases (:func:`medidiff.viz.triplanar`, label overlay) and
nearest-neighbour pairs (synthetic left, its nearest training case right).

JSON holds only standard values: ``inf``/``nan`` (e.g. the PSNR of identical volumes) are written
as the strings ``"inf"``, ``"-inf"``, ``"nan"``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medidiff.viz import draw_text, triplanar, write_png

__all__ = ["COLOURS", "jsonable", "draw_text", "bar_chart", "pair_figure", "write_json", "markdown_report"]

# bar colours per series, in order (named in report.md)
COLOURS: list[tuple[str, tuple[int, int, int]]] = [
    ("blue", (52, 101, 164)), ("orange", (245, 121, 0)), ("green", (78, 154, 6)),
    ("purple", (117, 80, 123)), ("red", (204, 0, 0)), ("grey", (136, 138, 133)),
]

def jsonable(obj: Any) -> Any:
    """Plain JSON values: numpy scalars/arrays converted, non-finite floats as strings."""
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer, int)):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        f = float(obj)
        if math.isnan(f):
            return "nan"
        if math.isinf(f):
            return "inf" if f > 0 else "-inf"
        return f
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json(path: str | Path, data: Mapping[str, Any]) -> Path:
    path = Path(path)
    path.write_text(json.dumps(jsonable(data), indent=2, allow_nan=False) + "\n")
    return path


def bar_chart(
    groups: Sequence[str],
    series: Sequence[str],
    means: np.ndarray,
    stds: np.ndarray | None = None,
    *,
    title: str = "",
    ymax: float | None = None,
    bar_width: int = 22,
    height: int = 220,
) -> np.ndarray:
    """Grouped bars: ``means`` (len(groups), len(series)); whiskers at mean +- std. -> (H, W, 3) uint8.

    Non-finite values are drawn as an empty slot.
    """
    means = np.asarray(means, dtype=np.float64)
    stds = np.zeros_like(means) if stds is None else np.nan_to_num(np.asarray(stds, np.float64))
    finite = means[np.isfinite(means)]
    top = ymax if ymax is not None else (float((finite + stds[np.isfinite(means)]).max()) * 1.1 if finite.size else 1.0)
    top = top if top > 0 else 1.0
    left, bottom, pad = 56, 40, 14
    legend_h = 14 * len(series) + 8
    group_w = len(series) * bar_width + pad
    width = left + len(groups) * group_w + pad
    width = max(width, 8 * max((len(s) for s in series), default=0) + 40, 8 * len(title) + 20)
    canvas = np.full((height + bottom + legend_h + 24, width, 3), 255, np.uint8)
    y0 = 22  # plot top
    draw_text(canvas, title, 6, 4)
    for k in range(5):  # horizontal grid + tick labels at 0, 25, 50, 75, 100 % of top
        v = top * k / 4
        y = y0 + height - int(round(height * k / 4))
        canvas[y, left:width - 4] = (225, 225, 225) if k else (0, 0, 0)
        draw_text(canvas, f"{v:.3g}", 4, y - 5, (80, 80, 80))
    canvas[y0:y0 + height + 1, left] = 0
    for g, name in enumerate(groups):
        gx = left + pad // 2 + g * group_w
        for s in range(len(series)):
            v = means[g, s]
            if not np.isfinite(v):
                continue
            colour = COLOURS[s % len(COLOURS)][1]
            h = int(round(height * min(max(v, 0.0), top) / top))
            x = gx + s * bar_width
            canvas[y0 + height - h:y0 + height, x + 2:x + bar_width - 2] = colour
            e = stds[g, s]
            if e > 0:
                lo = y0 + height - int(round(height * min(max(v - e, 0.0), top) / top))
                hi = y0 + height - int(round(height * min(v + e, top) / top))
                xc = x + bar_width // 2
                canvas[hi:lo + 1, xc] = 0
                canvas[hi, xc - 3:xc + 4] = 0
                canvas[lo, xc - 3:xc + 4] = 0
        draw_text(canvas, name, gx + (len(series) * bar_width - 8 * len(name)) // 2, y0 + height + 8)
    ly = y0 + height + 28
    for s, name in enumerate(series):
        canvas[ly + 14 * s:ly + 14 * s + 10, left:left + 10] = COLOURS[s % len(COLOURS)][1]
        draw_text(canvas, name, left + 16, ly + 14 * s)
    return canvas


def line_chart(
    series: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    *,
    title: str = "",
    log_y: bool = False,
    width: int = 480,
    height: int = 220,
) -> np.ndarray:
    """Lines ``{name: (x, y)}`` on shared axes (e.g. loss against step) -> (H, W, 3) uint8.

    Non-finite (and, with ``log_y``, non-positive) points are dropped.
    """
    clean = {}
    for name, (x, y) in series.items():
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        keep = np.isfinite(x) & np.isfinite(y) & ((y > 0) if log_y else True)
        clean[name] = (x[keep], np.log10(y[keep]) if log_y else y[keep])
    xs = np.concatenate([x for x, _ in clean.values()] or [np.zeros(1)])
    ys = np.concatenate([y for _, y in clean.values()] or [np.zeros(1)])
    x_lo, x_hi = (float(xs.min()), float(xs.max())) if xs.size else (0.0, 1.0)
    y_lo, y_hi = (float(ys.min()), float(ys.max())) if ys.size else (0.0, 1.0)
    x_hi, y_hi = max(x_hi, x_lo + 1e-9), max(y_hi, y_lo + 1e-9)
    left, y0 = 64, 22
    legend_h = 14 * len(clean) + 8
    canvas = np.full((y0 + height + 28 + legend_h, width, 3), 255, np.uint8)
    plot_w = width - left - 12
    draw_text(canvas, title, 6, 4)
    for k in range(5):
        v = y_lo + (y_hi - y_lo) * k / 4
        y = y0 + height - int(round(height * k / 4))
        canvas[y, left:left + plot_w] = (225, 225, 225) if k else (0, 0, 0)
        draw_text(canvas, f"{10 ** v if log_y else v:.3g}", 4, y - 5, (80, 80, 80))
    canvas[y0:y0 + height + 1, left] = 0
    for k in range(5):
        v = x_lo + (x_hi - x_lo) * k / 4
        x = left + int(round(plot_w * k / 4))
        text = f"{v:.4g}"
        draw_text(canvas, text, min(max(left - 8, x - 10), width - 8 * len(text) - 2), y0 + height + 6, (80, 80, 80))
    for s, (name, (x, y)) in enumerate(clean.items()):
        colour = COLOURS[s % len(COLOURS)][1]
        px = left + np.round((x - x_lo) / (x_hi - x_lo) * plot_w).astype(int)
        py = y0 + height - np.round((y - y_lo) / (y_hi - y_lo) * height).astype(int)
        for i in range(len(px)):  # dense segments: every pixel column between consecutive points
            a, b = (i - 1, i) if i else (i, i)
            n = max(abs(px[b] - px[a]), abs(py[b] - py[a]), 1)
            cx = np.round(np.linspace(px[a], px[b], n + 1)).astype(int)
            cy = np.round(np.linspace(py[a], py[b], n + 1)).astype(int)
            canvas[np.clip(cy, 0, canvas.shape[0] - 1), np.clip(cx, 0, width - 1)] = colour
        ly = y0 + height + 26 + 14 * s
        canvas[ly:ly + 10, left:left + 10] = colour
        draw_text(canvas, name, left + 16, ly)
    return canvas


def _hstack(panels: Sequence[np.ndarray], gap: int = 6) -> np.ndarray:
    h = max(p.shape[0] for p in panels)
    padded = [np.pad(p, ((0, h - p.shape[0]), (0, gap), (0, 0)), constant_values=255) for p in panels]
    return np.concatenate(padded, axis=1)


def _vstack(rows: Sequence[np.ndarray], gap: int = 6) -> np.ndarray:
    w = max(r.shape[1] for r in rows)
    padded = [np.pad(r, ((0, gap), (0, w - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    return np.concatenate(padded, axis=0)


def pair_figure(
    pairs: Sequence[tuple[np.ndarray, np.ndarray, str]], *, scale: int = 2
) -> np.ndarray:
    """Rows of ``(synthetic (C, X, Y, Z), nearest training (C, X, Y, Z), caption)``: each side is a
    tri-planar mosaic of every modality; the caption is drawn above the row."""
    rows = []
    for synth, train, caption in pairs:
        left = triplanar(list(np.asarray(synth)))
        right = triplanar(list(np.asarray(train)))
        body = _hstack([left, right], gap=10)
        body = np.kron(body, np.ones((scale, scale, 1), np.uint8)) if scale > 1 else body
        head = np.full((16, body.shape[1], 3), 255, np.uint8)
        draw_text(head, caption, 2, 3)
        rows.append(np.concatenate([head, body], axis=0))
    return _vstack(rows)


def example_figure(images: np.ndarray, label: np.ndarray | None, caption: str, scale: int = 2) -> np.ndarray:
    """Tri-planar mosaic of one case (rows = modalities), label overlaid, caption above."""
    body = triplanar(list(np.asarray(images)), label)
    body = np.kron(body, np.ones((scale, scale, 1), np.uint8)) if scale > 1 else body
    head = np.full((16, max(body.shape[1], 8 * len(caption) + 4), 3), 255, np.uint8)
    draw_text(head, caption, 2, 3)
    return _vstack([head, body], gap=0)


def save_png(out_dir: Path, name: str, image: np.ndarray, figures: list[str]) -> None:
    write_png(out_dir / name, image)
    figures.append(name)


# --------------------------------------------------------------------------------------------
# Markdown
# --------------------------------------------------------------------------------------------


def _fmt(v: Any, digits: int = 3) -> str:
    if isinstance(v, str):
        return v
    if v is None:
        return "-"
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        return str(int(v))
    f = float(v)
    if math.isnan(f):
        return "nan"
    if math.isinf(f):
        return "inf" if f > 0 else "-inf"
    return f"{f:.{digits}f}" if abs(f) >= 10 ** -digits or f == 0 else f"{f:.2e}"


def _subset_note(data: dict[str, Any]) -> str:
    """'; a seeded subset of ...' when eval.max_real left real cases out (older reports: nothing)."""
    full, used = data.get("cases_in_manifest"), data["cases"]
    if not full or all(used[k] == full[k] for k in full):
        return ""
    return (f"; a seeded subset (eval.max_real) of the manifest's {full['real_train']} training and "
            f"{full['real_heldout']} held-out cases")


def _scale_line(config: dict[str, Any]) -> list[str]:
    """The intensity scale every set was read on (eval.intensity_scale), where the report records it."""
    data, scale = config.get("data") or {}, (config.get("eval") or {}).get("intensity_scale")
    if not data or scale is None:
        return []
    why = ("eval.intensity_scale brain: whatever scale the model trained on" if scale == "brain"
           else "eval.intensity_scale config: the config's data keys")
    return [f"- intensity scale: each case's {data['percentile_region']} percentiles {data['percentiles']} to "
            f"[-1, {data['percentile_top']:g}] ({why})"]


def _provenance_line(p: Mapping[str, Any] | None) -> str:
    if not p:
        return "- provenance: not checked"
    folds = ", ".join(f"fold {k}: {v}" for k, v in sorted(p["mask_cases_by_fold"].items())) or "none recorded"
    return (f"- provenance check passed: no conditioning mask from the held-out fold and no model trained on another "
            f"manifest or fold; masks by fold: {folds}; {p['masks_from_other_manifests']} masks from other manifests, "
            f"{p.get('mask_files_not_matched_to_a_case', 0)} mask files not matched to a case (unverified), "
            f"{p.get('masks_generated_by_a_checked_model', 0)} generated by a model whose training data passed the "
            f"same rule, {p.get('masks_generated_by_a_model_without_training_record', 0)} by a model that recorded "
            "none (unverified); "
            f"{p['cases_without_verified_training_manifest']} of {p['cases']} cases without a verifiable training "
            "manifest (older generate, or its manifest was not readable)")


def _ci(v: Mapping[str, Any], digits: int = 3) -> str:
    return f"{_fmt(v['mean'], digits)} [{_fmt(v['ci95'][0], digits)}, {_fmt(v['ci95'][1], digits)}]"


def _seg_table(rows: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """rows: {name: result with "intervals" and "aggregate"} -> a markdown table."""
    out = ["| training set | region | Dice mean [95% CI] | Dice std over seeds | HD95 mm mean [95% CI] | HD95 penalised |",
           "| --- | --- | --- | --- | --- | --- |"]
    for name, res in rows.items():
        for region, iv in res["intervals"].items():
            out.append(f"| {name} | {region} | {_ci(iv['dice'])} | {_fmt(iv['dice']['std_over_seeds'])} | "
                       f"{_ci(iv['hd95'], 2)} | {res['aggregate'][region]['hd95_undefined']} |")
    return out


def _training_lines(sets: Mapping[str, Mapping[str, Any]]) -> list[str]:
    out = ["| training set | cases | seed | epochs | best epoch | stopped by | best validation Dice |",
           "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, res in sets.items():
        for p in res["per_seed"]:
            t = p["training"]
            out.append(f"| {name} | {t['train_cases']} + {t['val_cases']} val | {p['seed']} | {t['epochs']} | "
                       f"{t['best_epoch']} | {t['stopped']} | {_fmt(t['best_val_dice'])} |")
    return out


def _realism_lines(r: Mapping[str, Any]) -> list[str]:
    c = r["checks"]
    n = r["counts"]
    ok = lambda v: "pass" if v.get("pass") else "**FAIL**"  # noqa: E731
    lines = ["## Realism checks (grain and collapse cannot pass these)", "",
             f"Synthetic {n['synthetic']} vs real training {n['real']} cases; floor: {r['floor']} "
             f"({n['floor'][0]} vs {n['floor'][1]} cases). Failed: {', '.join(r['failed']) or 'none'}.", "",
             "| check | modality | synthetic | real / floor | verdict |", "| --- | --- | --- | --- | --- |"]
    b = c["background"]
    lines.append(f"| background non-zero fraction outside brain | all | {_fmt(b['synthetic_fraction_nonzero'])} | "
                 f"real max {_fmt(b['real_fraction_nonzero_max'])} | {ok(b)} |")
    lines.append(f"| background RMS outside brain ([0,1] units) | all | {_fmt(b['synthetic_rms'])} | "
                 f"real max {_fmt(b['real_rms_max'])} | {ok(b)} |")
    for mod, v in c["power_spectrum"]["per_modality"].items():
        lines.append(f"| power spectrum max abs log10 ratio (worst band {v['worst_band']}) | {mod} | "
                     f"{_fmt(v['max_abs_log10_ratio'])} | floor {_fmt(v['floor'])} | {ok(v)} |")
    for mod, v in c.get("detail_coherence", {}).get("per_modality", {}).items():  # reports before 2026-12-02 lack it
        lines.append(f"| detail coherence: lag-1 correlation of the high-passed brain (lower: grain, higher: blur) | "
                     f"{mod} | {_fmt(v['synthetic'])} | real {_fmt(v['real'])}, floor {_fmt(v['floor'])} | {ok(v)} |")
    for mod, v in c["intensity_histogram"]["per_modality"].items():
        lines.append(f"| brain intensity histogram W1 | {mod} | {_fmt(v['wasserstein'])} | floor {_fmt(v['floor'])} | {ok(v)} |")
    d = c["diversity"]
    if "ratio" in d:
        lines.append(f"| diversity: low-passed pair distance in brain | all | {_fmt(d['synthetic_mean'])} | "
                     f"real {_fmt(d['real_mean'])} (ratio {_fmt(d['ratio'])}) | {ok(d)} |")
    if "same_mask" in d:
        sm = d["same_mask"]
        lines.append(f"| diversity among samples of one mask ({sm['groups']} masks, {sm['pairs']} pairs) | all | "
                     f"{_fmt(sm['mean'])} | ratio to real across cases {_fmt(sm['ratio_to_real'])} | - |")
    if "brain_size" in c:  # reports written before 2026-12-02 lack it
        bs = c["brain_size"]
        lines.append(f"| brain size, W1 of log10 brain share of the grid (median) | all | {_fmt(bs['wasserstein'])} "
                     f"({_fmt(bs['synthetic_median'])}) | floor {_fmt(bs['floor'])} (real {_fmt(bs['real_median'])}) | "
                     f"{ok(bs)} |")
    sp = c.get("spread_across_cases")  # reports before session 41 lack it
    if sp:
        for prop, v in [("all properties, geometric mean", sp), *sp["per_property"].items()]:
            lo, hi = v["floor_range"]
            verdict = "no verdict" if sp["pass"] is None else "**FAIL**" if v["below"] else "pass"
            lines.append(f"| spread across cases: robust sd over real's, {prop} ({v['reads_as']}) | all | "
                         f"{_fmt(v['ratio'])} | real resamples {_fmt(v['floor_median'])}, low quantile "
                         f"{_fmt(v['floor_low'])} (range {_fmt(lo)}-{_fmt(hi)}) | {verdict} |")
        if "note" in sp:
            lines.append(f"| spread across cases | all | - | {sp['note']} | no verdict |")
    if "tumour_statistics" in c:
        t = c["tumour_statistics"]
        sh, sz = t["share_with_tumour"], t["size_log10_wt_fraction"]
        lines.append(f"| share of cases with a tumour | labels | {_fmt(sh['synthetic'])} | real {_fmt(sh['real'])}, "
                     f"allowed difference {_fmt(sh['allowed_difference'])} | {ok(sh)} |")
        et_share = t.get("et_share_of_wt_log10")  # reports before 2026-12-04 (session 35) lack it
        if et_share:
            lines.append(f"| ET share of WT, W1 of log10 ET voxels / WT voxels (median) | labels | "
                         f"{_fmt(et_share['wasserstein'])} ({_fmt(et_share['synthetic_median'])}) | floor "
                         f"{_fmt(et_share['floor'])} (real {_fmt(et_share['real_median'])}) | {ok(et_share)} |")
        core, core_share = t.get("share_with_core"), t.get("core_share_of_wt_log10")  # since 2026-12-07 (session 61)
        if core:
            lines.append(f"| share of the cases with a tumour that have a necrotic core (TC without ET) | labels | "
                         f"{_fmt(core['synthetic'])} | real {_fmt(core['real'])}, allowed difference "
                         f"{_fmt(core['allowed_difference'])} | {ok(core)} |")
        if core_share:
            lines.append(f"| core share of WT, W1 of log10 core voxels / WT voxels (median) | labels | "
                         f"{_fmt(core_share['wasserstein'])} ({_fmt(core_share['synthetic_median'])}) | floor "
                         f"{_fmt(core_share['floor'])} (real {_fmt(core_share['real_median'])}) | {ok(core_share)} |")
        several = t.get("share_with_several_tumours")  # reports before 2026-12-04 (session 35) lack it
        if several:
            lines.append(f"| share of the cases with a tumour that hold two or more | labels | "
                         f"{_fmt(several['synthetic'])} | real {_fmt(several['real'])}, allowed difference "
                         f"{_fmt(several['allowed_difference'])} | {ok(several)} |")
        lines.append(f"| tumour size, W1 of log10 WT fraction (median) | labels | {_fmt(sz['wasserstein'])} "
                     f"({_fmt(sz['synthetic_median'])}) | floor {_fmt(sz['floor'])} (real {_fmt(sz['real_median'])}) | "
                     f"{ok(sz)} |")
    contrast = c.get("tumour_contrast", {})  # reports before 2026-12-04 lack it
    for key, what in (("et_contrast", "ET median - normal brain median"),
                      ("et_upper", "ET 90th percentile - normal brain median"),
                      ("top_in_tumour", "share of the brain's brightest 0.5 % inside the tumour (WT + 2 voxels)"),
                      ("ed_contrast", "edema median - normal brain median")):
        for mod, v in contrast.get(key, {}).items():
            lines.append(f"| tumour contrast: {what}, W1 (median) | {mod} | {_fmt(v['wasserstein'])} "
                         f"({_fmt(v['synthetic_median'])}) | floor {_fmt(v['floor'])} (real {_fmt(v['real_median'])}) | "
                         f"{ok(v)} |")
    lines += ["", "Rules: " + "; ".join(f"{k}: {v['rule']}" for k, v in c.items() if "rule" in v) + ".", "",
              "Can show: background grain, excess or missing texture power per frequency band, detail that is grain "
              "rather than structure, intensity "
              "distributions off the real ones, and cases that are (near) copies of each other. Cannot show: whether "
              "anatomy and tumour are in plausible places (see segmentation and tissue checks); with few cases the "
              "floor itself is noisy.", ""]
    return lines


def markdown_report(report: Mapping[str, Any]) -> str:
    """report.md from the report dict (the same facts as report.json, for people)."""
    d = report["data"]
    lines = [
        "# medidiff evaluation report", "",
        f"- command: `{report['command']}`",
        f"- medidiff {report['medidiff_version']}, {report['created']}",
        f"- real manifest: `{d['manifest']}` (sha256 `{d['manifest_sha256'][:16]}...`), root `{d['root']}`, "
        f"held-out fold {d['fold']}",
        f"- synthetic folder: `{d['synthetic_dir']}`",
        _provenance_line(d.get("provenance_check")),
        f"- cases: {d['cases']['real_train']} real training, {d['cases']['real_heldout']} real held-out, "
        f"{d['cases']['synthetic']} synthetic ({d['synthetic_with_labels']} with labels)" + _subset_note(d),
        f"- grid: {d['grid']['shape']} voxels at {d['grid']['spacing_mm']} mm (the experiment's data pipeline)",
        *_scale_line(report.get("config", {})),
        f"- seeds: {report['seeds']}; tasks: {', '.join(report['tasks'])}",
        f"- feature network: {report.get('feature_net') or 'not used'}",
        *([("- wall time by stage: " + ", ".join(f"{k} {v:g} s" for k, v in report["seconds"].items()))]
          if report.get("seconds") else []),
        "",
    ]
    res = report["results"]
    if "utility" in res:
        u = res["utility"]
        b = u["budget"]
        lines += ["## Segmentation utility (train on each set, test on held-out real)", "",
                  f"SegResNet (init_filters {b['init_filters']}), the same rule for every set: up to {b['epochs']} epochs "
                  f"(batch {b['batch_size']}, lr {b['lr']}), stopped when the Dice on a held-back {b['val_fraction']:.0%} of "
                  f"the set has not improved by {b['min_delta']} for {b['patience']} epochs"
                  + (f", at most {b['max_steps']} steps" if b.get("max_steps") else "") +
                  f"; seeds {b['seeds']}; {u['test_cases']} held-out real cases. Means over cases and seeds with "
                  f"bootstrap 95% intervals ({u['bootstrap']['resamples']} resamples of cases and seeds).", ""]
        lines += _seg_table(u["training_sets"])
        lines += ["", "Training cases: " + ", ".join(
            f"{k} {v['train_cases']}" + (f" ({v['cases_without_region']['WT']} without a tumour)"
                                         if "cases_without_region" in v else "")  # reports since session 63
            for k, v in u["training_sets"].items()), ""]
        if any("by_tumour_presence" in v for v in u["training_sets"].values()):
            lines += ["On the test cases whose labels hold the region (the mean above also counts each case without "
                      "it as 1, nothing predicted, or 0, any false voxel), and the share of the cases without it "
                      "predicted empty:", "", "| training set | region | Dice with the region (cases) | "
                      "cases without it predicted empty |", "| --- | --- | --- | --- |"]
            for name, v in u["training_sets"].items():
                for region, w in v.get("by_tumour_presence", {}).get("with_region", {}).items():
                    wo = v["by_tumour_presence"]["without_region"][region]
                    lines.append(f"| {name} | {region} | {_fmt(w['dice_mean'])} ({w['cases']}) | "
                                 f"{_fmt(wo['dice_mean']) if wo['cases'] else 'n/a'} ({wo['cases']} cases) |")
            lines.append("")
        if u.get("paired_vs_real"):
            lines += [f"Paired differences (same test case and seed): each synthetic set against {u['paired_reference']}, "
                      "the size-matched real set, and real + synthetic against all real (where they differ); last "
                      "column on the cases whose labels hold the region:", "",
                      "| difference | region | Dice [95% CI] | HD95 mm [95% CI] | Dice with the region [95% CI] |",
                      "| --- | --- | --- | --- | --- |"]
            for name, regs in u["paired_vs_real"].items():
                for region, v in regs.items():
                    w = v.get("dice_with_region")  # reports before 2026-12-03 lack it
                    with_region = f"{_ci(w)} ({w['cases']} cases)" if w else "n/a"
                    lines.append(f"| {name} | {region} | {_ci(v['dice'])} | {_ci(v['hd95'], 2)} | {with_region} |")
            lines.append("")
        lines += ["Can show: whether segmenters trained on synthetic cases do as well on real test cases as ones "
                  "trained on as many real cases, within the intervals. Cannot show: a difference smaller than the "
                  "interval; an interval containing 0 is not proof of equality. Per-case scores are in report.json.", ""]
        lines += [f"- {n}" for n in u.get("notes", [])] + ([""] if u.get("notes") else [])
        lines += ["Segmenter training:", ""] + _training_lines(u["training_sets"]) + [""]
    if "fidelity" in res:
        f = res["fidelity"]
        lines += ["## Mask fidelity (real-trained segmenter on synthetic images vs their labels)", "",
                  f"{f['cases']} synthetic cases ({f['mask_conditioned_cases']} with a conditioning mask in their provenance).", ""]
        lines += _seg_table({"real -> synthetic": f, **({"real -> real held-out": f["real_heldout"]}
                                                        if "real_heldout" in f else {})})
        if "dice_ratio_to_real" in f:
            lines += ["", "Synthetic / real held-out mean Dice of the same segmenter on the cases whose labels hold the "
                      "region (issue 16's goal: >= 0.85 for WT and TC): "
                      + ", ".join(f"{r} {_fmt(v)}" for r, v in f["dice_ratio_to_real"].items()) + "."]
            if "dice_ratio_to_real_all_cases" in f:
                lines += ["", "Over all cases (not the goal's ratio: it moves with the share of tumour-free cases, each "
                          "scored 1 or 0 on any false voxel, which the realism check's tumour share reads): "
                          + ", ".join(f"{r} {_fmt(v)}" for r, v in f["dice_ratio_to_real_all_cases"].items()) + "."]
        if "by_tumour_presence" in f:
            def split(b: Mapping[str, Any]) -> str:
                return "; ".join(f"{r} {_fmt(b['with_region'][r]['dice_mean'])} on {b['with_region'][r]['cases']} cases "
                                 f"with it, {_fmt(b['without_region'][r]['dice_mean'])} on {b['without_region'][r]['cases']} "
                                 "without" for r in b["with_region"])
            lines += ["", "Mean Dice by whether the labels hold the region (a case without it scores 0 on any false "
                      "voxel): synthetic "
                      + split(f["by_tumour_presence"]) + (f"; real held-out {split(f['real_heldout']['by_tumour_presence'])}"
                                                         if "by_tumour_presence" in f.get("real_heldout", {}) else "") + "."]
        if "unlabelled_tumour" in f:
            u = f["unlabelled_tumour"]
            lines += ["", f"Tumour shown where the labels hold none ({'pass' if u['pass'] else '**fail**'}; {u['rule']}):"]
            strata = u.get("strata") or {"all": {"threshold_from": "every real case", "regions": u["regions"]}}  # before 12-06
            for stratum, st in strata.items():
                c = next(iter(st["regions"].values()))["cases"]
                kind = f"cases {stratum}" if stratum.startswith("with") else f"{stratum} cases"
                lines.append(f"- {kind} ({c['synthetic']} synthetic, {c['real']} real; threshold from "
                             f"{st['threshold_from']}): "
                             + "; ".join(f"{r} {v['share_flagged']['synthetic']:.1%} flagged against "
                                         f"{v['share_flagged']['real']:.1%} of real (allowed {v['allowed_share']:.1%}; "
                                         f"threshold {_fmt(v['threshold_ml'])} mL, mean {_fmt(v['mean_ml']['synthetic'])}"
                                         f" against {_fmt(v['mean_ml']['real'])} mL"
                                         f"{'' if v['pass'] else ', **fail**'})" for r, v in st["regions"].items()))
        lines += ["", "Can show: whether the images show the tumour where their label says (a real-trained segmenter "
                  "finds it). Cannot show: realism of the rest of the image; and if a label came from the segmenter's "
                  "own training cases it is inflated (evaluate refuses sets whose masks came from the held-out fold).", ""]
    if "image" in res:
        im = res["image"]
        lines += ["## Image metrics", ""]
        ms = im.get("ms_ssim_diversity", {})
        if ms:
            s = im.get("ms_ssim_settings") or {}
            lines += [f"MS-SSIM over random pairs of different cases (lower = more diverse); {s.get('scales')} scales, "
                      f"kernel {s.get('kernel_size')} (sigma {s.get('kernel_sigma')}), chosen for grid {s.get('shape')}. "
                      "Independent grain lowers it too (grainy copies of one case scored as 'more diverse' than "
                      "different clean cases): read it only beside the background and spectrum checks, and use the "
                      "low-passed diversity of the realism checks for diversity.", "",
                      "| set | MS-SSIM mean | std | pairs |", "| --- | --- | --- | --- |"]
            for k, v in ms.items():
                lines.append(f"| {k} | {_fmt(v['mean'])} | {_fmt(v['std'])} | {v['pairs']} |")
            lines.append("")
        dist = im.get("distances", {})
        if dist:
            lines += [f"Feature distances ({report.get('feature_net')}); MMD^2 with a Gaussian kernel (median bandwidth, "
                      "biased) and the linear unbiased MMD^2 of monai.metrics.MMDMetric. Real held-out vs real training is "
                      "the floor the same sample sizes give: the median over seeded subsets of the held-out cases, "
                      "the synthetic set's size (Frechet range over the subsets in parentheses). The synthetic "
                      "Frechet's square brackets: a 95 % interval for the generator's typical figure at this count, "
                      "over its cases (delete-one jackknife; the draw of cases only, not the spread between training "
                      "runs).", "",
                      "| comparison | variant | n | Frechet | MMD^2 rbf | MMD^2 linear |", "| --- | --- | --- | --- | --- | --- |"]
            for comp, variants in dist.items():
                for var, v in variants.items():
                    spread = v.get("frechet_range")
                    own = v.get("frechet_interval")
                    fr = (_fmt(v.get("frechet")) + (f" ({_fmt(spread[0])}-{_fmt(spread[1])})" if spread else "")
                          + (f" [{_fmt(own[0])}-{_fmt(own[1])}]" if own else ""))
                    lines.append(f"| {comp} | {var} | {v.get('n', '-')} | {fr} | {_fmt(v.get('mmd2_rbf'))} | "
                                 f"{_fmt(v.get('mmd2_linear'))} |")
            lines.append("")
            readings = im.get("frechet_readings", {})  # reports before 2026-12-02 lack them
            lines += [f"- Frechet {var}: {r['reading']}" for var, r in readings.items() if "reading" in r]
            if any("reading" in r for r in readings.values()):
                lines.append("")
        pr = im.get("prdc", {})  # reports since session 40
        if pr:
            kn = next((v["k"] for v in pr.values() if "k" in v), "-")
            lines += [f"Precision, recall, density, coverage (3D features, k = {kn} "
                      "neighbours, features scaled by the real training cases' spread): Frechet mixes how real the "
                      "cases look with how much of the real variety they span; these split it. Real held-out: the "
                      "median over seeded subsets of the synthetic set's size (range in parentheses).", "",
                      "| comparison | n | precision | recall | density | coverage |", "| --- | --- | --- | --- | --- | --- |"]
            for comp, v in pr.items():
                cells = [_fmt(v.get(key)) + (f" ({_fmt(v[key + '_range'][0])}-{_fmt(v[key + '_range'][1])})"
                                             if key + "_range" in v else "")
                         for key in ("precision", "recall", "density", "coverage")]
                lines.append(f"| {comp} | {v.get('n', '-')} | " + (" | ".join(cells) if "note" not in v else
                                                                     f"{v['note']} | | |") + " |")
            reading = im.get("prdc_reading")
            verdict = ("pass" if reading["pass"] else "FAIL") if reading and "pass" in reading else "reading"
            lines += ["", f"- {verdict}: {reading['reading']}"] if reading else []
            lines.append("")
        if im.get("notes"):
            lines += [f"- {n}" for n in im["notes"]] + [""]
        lines += ["Can show: how far the synthetic feature distribution is from the real one, relative to the floor "
                  "at the same counts (a value near the floor is as close as two real samples get). Cannot show: "
                  "what differs (see the realism checks); values from another feature net, grid or sample count are "
                  "not comparable.", ""]
    if "realism" in res:
        lines += _realism_lines(res["realism"])
    if "memorisation" in res:
        m = res["memorisation"]
        s = m["summary"]
        lines += ["## Memorisation audit", "",
                  f"Space: {m['space']}. {m['rule']}", "",
                  f"- training NN similarity: min {_fmt(s['reference_nn_similarity']['min'])}, median "
                  f"{_fmt(s['reference_nn_similarity']['median'])}, max {_fmt(s['reference_nn_similarity']['max'])} "
                  f"(n {s['reference_nn_similarity']['n']}); percentile value {_fmt(s['reference_percentile_value'], 4)}; "
                  f"threshold {_fmt(s['threshold'], 4)}",
                  f"- synthetic NN similarity: median {_fmt(s['synthetic_nn_similarity']['median'])}, max "
                  f"{_fmt(s['synthetic_nn_similarity']['max'])}; **flagged {s['flagged']} of {s['synthetic_nn_similarity']['n']}**"]
        if "control_heldout_real" in s:
            c = s["control_heldout_real"]
            lines.append(f"- control (held-out real cases, never copies): {c['flagged']} of {c['n']} flagged, max NN "
                         f"similarity {_fmt(c['max_nn_similarity'])}")
        ctl = m.get("controls") or {}
        if ctl:
            lines += ["", "Positive controls on this data (copies of training cases planted and audited with the same "
                      "rule; a hit is flagged AND matched to its own source):", "",
                      "| planted kind | flagged | rate |", "| --- | --- | --- |"]
            lines += [f"| {k} | {v['flagged']} of {v['n']} | {_fmt(v['rate'])} |" for k, v in ctl["planted"].items()]
            if "heldout_real" in ctl:
                h = ctl["heldout_real"]
                lines += ["", f"Negative control: {h['flagged']} of {h['n']} held-out real cases flagged (false-positive "
                          f"rate {_fmt(h['rate'])})."]
            lines += ["", "Can show: synthetic cases that are copies of a training case, also shifted, rotated, mirrored, "
                      "rescaled, intensity-changed or noised, at the detection rates above. Cannot show: copies of parts "
                      "of a case (a copied tumour in another brain), or copies of cases outside the training split."]
        lines += ["", "| synthetic | nearest training case | similarity | flagged |", "| --- | --- | --- | --- |"]
        for row in m["cases"]:
            lines.append(f"| {row['case']} | {row['nearest']} | {_fmt(row['similarity'], 4)} | {'yes' if row['flagged'] else ''} |")
        lines.append("")
    if "tissue" in res:
        t = res["tissue"]
        c = t["synthetic_vs_real"]
        lines += ["## Tissue QC (CSF/GM/WM segmenter trained on the real tissue maps)", "",
                  f"Voxel agreement of the tissue segmenter with the held-out ground truth: "
                  f"{_fmt(t['segmenter']['voxel_agreement_on_heldout'])} ({t['segmenter'].get('source', 'trained now')}). "
                  "Real reference: held-out real cases through the "
                  f"same segmenter. {c['rule']}. Failed: {', '.join(c['failed']) or 'none'}.", "",
                  "| metric | synthetic mean | real mean +- std | real range | z | synthetic in range | ground truth (held-out) | verdict |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        for k, v in c["metrics"].items():
            if "note" in v:
                lines.append(f"| {k} | - | - | - | - | - | - | {v['note']} |")
                continue
            lines.append(f"| {k} | {_fmt(v['synthetic_mean'])} | {_fmt(v['real_mean'])} +- {_fmt(v['real_std'])} | "
                         f"[{_fmt(v['real_min'])}, {_fmt(v['real_max'])}] | {_fmt(v['z'], 2)} | {_fmt(v['in_real_range'], 2)} | "
                         f"{_fmt(t['real_heldout_ground_truth'].get(k))} | {'pass' if v['pass'] else '**FAIL**'} |")
        lines += ["", "Can show: synthetic brains whose tissue proportions or grey/white contrast are off the real ones. "
                  "Cannot show: where the tissues are beyond CSF's depth (folding, symmetry); with few real cases the real std is uncertain; "
                  "whether a fraction is off because the anatomy is or because the images are smoother than real "
                  "(blurred real cases read as more CSF: compare the power spectrum check).", ""]
    if "codec" in res:
        c = res["codec"]
        lines += ["## Codec reconstruction (encode -> decode of real cases)", "",
                  f"Codec `{c['codec']}` on {c['cases']} {c['set']} cases, [-1, 1] scale (data range 2).", "",
                  "| modality | PSNR dB mean | PSNR min | SSIM mean | SSIM min |", "| --- | --- | --- | --- | --- |"]
        for m, v in c["per_modality"].items():
            lines.append(f"| {m} | {_fmt(v['psnr_mean'], 2)} | {_fmt(v['psnr_min'], 2)} | {_fmt(v['ssim_mean'], 4)} | "
                         f"{_fmt(v['ssim_min'], 4)} |")
        lines += ["", "Can show: the detail a model on this codec's latents can at best reproduce (a wavelet codec is "
                  "exact: inf dB). Cannot show: anything about the diffusion model itself.", ""]
    if report.get("skipped"):
        lines += ["## Skipped", ""] + [f"- {k}: {v}" for k, v in report["skipped"].items()] + [""]
    if report.get("figures"):
        lines += ["## Figures", ""]
        legends = report.get("figure_legends", {})
        for name in report["figures"]:
            lines.append(f"- `{name}`" + (f": {legends[name]}" if name in legends else ""))
            lines.append(f"  ![{name}]({name})")
        lines.append("")
    lines += ["## Definitions", ""] + [f"- {n}" for n in report.get("definitions", [])] + [""]
    return "\n".join(lines)
