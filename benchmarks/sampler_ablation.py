"""Sampler ablation of a trained anatomy model (issue 16's "10/30/50 Euler steps and Heun" rows):
the same model, the same seeds, only the sampler changes, scored by ``medidiff evaluate``'s realism
checks against real anatomy cases.

    python benchmarks/sampler_ablation.py --out OUT --data DATA --manifest MANIFEST.json \\
        [--model anatomy-2mm] [--variants euler10 euler30 euler60 heun15 heun30] [--num 16] [--device cpu]

DATA/MANIFEST: the anatomy set the model was trained on (``configs/anatomy_2mm.yaml``'s commands);
fold 0 is held out. For each variant, ``medidiff generate`` writes ``--num`` cases (seeds 0..num-1,
so case i starts from the same noise in every variant) into OUT/generated/<variant>, timed. Then the
realism checks (background, power spectrum per band, intensity histograms, diversity, tumour
statistics) score every variant against the first ``--real`` training and held-out cases, whose
summary is built once (``quality_common.realism_checks_of``); each report is OUT/realism/<variant>.json.
OUT/sampler_ablation.json holds the scores (``quality_scale.eval_metrics``), timings, the device and
every command; OUT/report.md the table; OUT/figures/<variant>.png four generated cases (the same
seeds in every variant) above four held-out real ones, at full resolution.

What it cannot show: the seeds are shared, so differences between variants are paired, but with
16 cases a set-level figure still moves by about its real-vs-real floor (reported beside it); a
sampler that helps one model may not help another.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality_common import (MODALITIES, comparison_figure, device_info, log, realism_checks_of,  # noqa: E402
                            write_atomic)

REPO = Path(__file__).resolve().parents[1]
# name -> (sampler, steps, eta): heun N makes 2N - 1 network evaluations (its last step is Euler);
# eta > 0: Euler steps that add fresh noise (the flow path's posterior at 1, medidiff.samplers.flow)
VARIANTS: dict[str, tuple[str, int, float]] = {
    "euler10": ("euler", 10, 0.0), "euler30": ("euler", 30, 0.0), "euler60": ("euler", 60, 0.0),
    "heun15": ("heun", 15, 0.0), "heun30": ("heun", 30, 0.0),
    "euler30_eta05": ("euler", 30, 0.5), "euler30_eta1": ("euler", 30, 1.0), "euler60_eta1": ("euler", 60, 1.0),
    "heun5": ("heun", 5, 0.0),  # 9 evaluations: the CPU smoke test's
}
COLUMNS = [
    ("evaluations", "network evaluations a case", 0),
    ("seconds_per_case", "sampling seconds a case", 2),
    ("eval_background_rms", "background RMS (goal <= 0.02)", 4),
    *[(f"spectrum_max_abs_log10_{m}", f"spectrum max abs log10 {m} (goal <= 0.30)", 3) for m in MODALITIES],
    *[(f"spectrum_top_band_ratio_{m}", f"top band power ratio {m}", 3) for m in MODALITIES],
    *[(f"histogram_w1_{m}", f"histogram W1 {m}", 3) for m in MODALITIES],
    ("tumour_share", "share with a tumour", 3),
    ("tumour_size_w1", "tumour size W1 (log10)", 3),
]


def evaluations(sampler: str, steps: int) -> int:
    return 2 * steps - 1 if sampler == "heun" else steps


def generate(model: str, variant: str, num: int, device: str, dest: Path) -> dict[str, Any]:
    """``medidiff generate`` of one variant, in this process, timed."""
    from medidiff.cli.main import main as medidiff_main

    sampler, steps, eta = VARIANTS[variant]
    argv = ["generate", "--model", model, "--num", str(num), "--out", str(dest), "--seed", "0", "--device", device,
            "--sampler", sampler, "--steps", str(steps), *(["--eta", str(eta)] if eta else []), "--overwrite",
            "--no-progress"]
    t0 = time.perf_counter()
    code = medidiff_main(argv)
    seconds = time.perf_counter() - t0
    if code:
        raise SystemExit(f"medidiff generate exited {code} for variant {variant}")
    return {"command": "medidiff " + shlex.join(argv), "seconds": round(seconds, 1),
            "seconds_per_case": seconds / num, "evaluations": evaluations(sampler, steps)}


def write_report(record: dict[str, Any], out: Path) -> None:
    rows = record["variants"]
    floors = record.get("floors", {})
    lines = [f"# Sampler ablation of `{record['model']}` ({record['device']['device']}, torch "
             f"{record['device']['torch']}, {record['date'][:10]})", "",
             f"{record['num']} generated cases a variant (seeds 0..{record['num'] - 1}, the same in every variant), "
             f"scored against {record['real']} real training and {record['real']} held-out cases on "
             f"`{record['config']}`'s grid. Commands in sampler_ablation.json; reports in realism/.", "",
             "| measure | " + " | ".join(rows) + " | real-vs-real floor |",
             "| --- | " + " | ".join("---" for _ in rows) + " | --- |"]
    for key, label, digits in COLUMNS:
        cells = []
        for v in rows.values():
            x = v.get(key)
            cells.append("" if x is None else f"{x:.{digits}f}")
        floor = floors.get(key)
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {'' if floor is None else f'{floor:.3f}'} |")
    lines += ["", "Differences smaller than the floor (the same figure between two real sets of this size) "
              "are not evidence."]
    write_atomic(out / "report.md", "\n".join(lines) + "\n")


def figures(out: Path, variants: list[str], data: Path, manifest: Path, n: int = 4) -> list[Path]:
    """OUT/figures/<variant>.png: the first ``n`` generated cases above the first ``n`` held-out ones."""
    from medidiff.data.manifest import load_manifest

    held = [Path(it["image"][0]).parent for it in load_manifest(manifest, data, "training") if it.get("fold") == 0][:n]
    written = []
    for variant in variants:
        cases = sorted(d for d in (out / "generated" / variant).iterdir() if d.name.startswith("case_"))[:n]
        written.append(comparison_figure(cases, held, out / "figures" / f"{variant}.png"))
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--model", default="anatomy-2mm", help="model folder or shipped name (default %(default)s)")
    ap.add_argument("--config", type=Path, default=REPO / "configs" / "anatomy_2mm.yaml",
                    help="experiment whose data section is the evaluation grid (default %(default)s)")
    ap.add_argument("--data", type=Path, required=True, help="the anatomy data folder")
    ap.add_argument("--manifest", type=Path, required=True, help="its manifest (fold 0 held out)")
    ap.add_argument("--variants", nargs="+", default=[v for v in VARIANTS if v != "heun5"], choices=list(VARIANTS))
    ap.add_argument("--num", type=int, default=16, help="generated cases a variant (default %(default)s)")
    ap.add_argument("--real", type=int, default=16, help="real training and held-out cases (default %(default)s)")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    out = args.out.absolute()
    out.mkdir(parents=True, exist_ok=True)
    from quality_scale import eval_metrics

    record: dict[str, Any] = {"model": args.model, "config": str(args.config), "num": args.num, "real": args.real,
                              "device": device_info(args.device),
                              "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                              "argv": sys.argv if argv is None else argv, "variants": {}, "generation": {}}
    folders = {}
    for variant in args.variants:
        log(f"generating {variant}")
        record["generation"][variant] = generate(args.model, variant, args.num, args.device,
                                                 out / "generated" / variant)
        folders[variant] = out / "generated" / variant
        write_atomic(out / "sampler_ablation.json", json.dumps(record, indent=1))
    results = realism_checks_of(args.config, args.manifest.absolute(), args.data.absolute(), folders, args.real,
                                out / "realism")
    for variant, r in results.items():
        metrics = eval_metrics({"results": {"realism": r}})
        gen = record["generation"][variant]
        record["variants"][variant] = {"evaluations": gen["evaluations"], "seconds_per_case": gen["seconds_per_case"],
                                       **metrics}
    first = next(iter(results.values()))
    spectra = first["checks"].get("power_spectrum", {}).get("per_modality", {})
    hist = first["checks"].get("intensity_histogram", {}).get("per_modality", {})
    record["floors"] = {**{f"spectrum_max_abs_log10_{m}": r["floor"] for m, r in spectra.items()},
                        **{f"histogram_w1_{m}": r["floor"] for m, r in hist.items()}}
    write_atomic(out / "sampler_ablation.json", json.dumps(record, indent=1, default=float))
    write_report(record, out)
    figures(out, list(folders), args.data.absolute(), args.manifest.absolute())
    log(f"recorded {out / 'sampler_ablation.json'}, report.md and figures/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
