"""What the quality benchmarks share (quality_ablation.py, quality_scale.py): the anatomy data set and
its manifest, the 2 mm wavelet-flow base model's overrides, the background scores, training one
config to an exported model, processes side by side on one GPU, and the generated-beside-real figure.

Background scores (``background_scores``), on images in [0, 1]:

* ``speckle``: fraction of voxels outside the (dilated) head with intensity > 0.05 of the output
  range. Real skull-stripped cases score 0: any speckle is the model's.
* ``background_rms``: RMS intensity outside the head, as a fraction of the output range; issue 16
  asks for <= 0.02.
* ``head_fraction``: the head's share of the grid, beside the real cases' (a collapsed or
  exploded sample is far from it).

The head is ``medidiff evaluate``'s brain mask (``medidiff.eval.realism.brain_masks``: adaptive, so a
grey background is not taken for head), dilated by 2 voxels: isolated speckle is not part of it. Until
session 7 it was the largest component of (mean > 0.1), which called a grey box all head and scored
its background 0.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

MODALITIES = ("t1n", "t1c", "t2w", "t2f")
# net: the largest of this layout whose bf16 weights fit the 25 MB a pretrained model may ship (11.6M)
FULL = {"cases": 32, "shape": (120, 120, 78), "roi": (80, 96, 80), "channels": [48, 96, 160], "micro_batch": 8,
        "generate": 4, "workers": 4}
SMOKE = {"cases": 6, "shape": (40, 40, 26), "roi": (32, 32, 32), "channels": [16, 32], "micro_batch": 2,
         "generate": 2, "workers": 0}


def log(message: str) -> None:
    """A progress line with a UTC timestamp (the GPU job's log is read while it runs)."""
    print(f"[{dt.datetime.now(dt.timezone.utc).strftime('%H:%M:%S')}Z] {message}", flush=True)


def scale_overrides(scale: dict[str, Any]) -> list[str]:
    """``--set`` keys that put a config on an intensity scale (``medidiff.data.config.intensity_scale``'s dict)."""
    import json

    return [f"data.{key}={value if isinstance(value, str) else json.dumps(value)}" for key, value in scale.items()]


def overrides(p: dict, out: Path, device: str, smoke: bool) -> list[str]:
    """The base model's config (--set form): data under ``out``, fold 0 held out, seed 0."""
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


def make_anatomy_data(out: Path, p: dict, *, workers: int = 1) -> float:
    """``p["cases"]`` anatomy cases (seed 0) in ``out/data`` and ``out/manifest.json`` (4 folds, fold 0
    held out); kept when an earlier call wrote the same count. Returns the seconds it took."""
    import json

    from medidiff.data.manifest import build_brats_manifest, write_manifest
    from medidiff.data.prepare import write_synthetic_set

    t0 = time.perf_counter()
    done = out / "data" / "anatomy.json"
    if (out / "manifest.json").exists() and done.exists():
        meta = json.loads(done.read_text())
        if meta.get("complete") and meta.get("cases") == p["cases"] and list(meta["spec"]["shape"]) == list(p["shape"]):
            return 0.0
    write_synthetic_set("anatomy", out / "data", p["cases"], shape=p["shape"], seed=0, workers=workers)
    write_manifest(build_brats_manifest(out / "data", name="anatomy", num_folds=4, seed=0), out / "manifest.json")
    return time.perf_counter() - t0


def head_mask(images: np.ndarray) -> np.ndarray:
    """(M, X, Y, Z) in [0, 1] -> (X, Y, Z) bool: ``medidiff evaluate``'s brain mask (realism.brain_masks:
    a level between the background's and Otsu's, holes filled, the largest component), dilated 2."""
    from scipy import ndimage

    from medidiff.eval.realism import brain_masks

    return ndimage.binary_dilation(brain_masks(images[None] * 2.0 - 1.0)[0], iterations=2)


def background_scores(images: np.ndarray) -> dict[str, float]:
    """images: (M, X, Y, Z) in [0, 1]. Speckle fraction, background RMS and head fraction. A "head"
    that fills the grid (a bright background, no edge to find) scores 1.0 for both: the worst case,
    not the empty outside's 0 that the fixed-threshold mask once gave a grey box."""
    head = head_mask(images)
    outside = images[:, ~head]
    if not outside.size:
        return {"speckle": 1.0, "background_rms": 1.0, "head_fraction": float(head.mean())}
    return {
        "speckle": float((outside > 0.05).mean()),
        "background_rms": float(np.sqrt((outside**2).mean())),
        "head_fraction": float(head.mean()),
    }


def generate_and_score(model: Path, dest: Path, num: int, device: str, *, sr_model: Path | None = None,
                       masks: Path | None = None, seed: int = 0, tail_steps: int | None = None,
                       sampler: str | None = None, steps: int | None = None) -> dict[str, Any]:
    """``medidiff generate`` of ``num`` cases (seeds ``seed``..) from ``model`` (+ ``sr_model``: the cascade;
    ``masks``: a folder of label maps for a mask-conditioned model, one a case in turn; ``tail_steps``, ``sampler``,
    ``steps``: generate's --tail-steps / --sampler / --steps, else the model's own) into ``dest``, timed, with every
    case's background scores (generated files are in [0, 1]). Raises SystemExit naming ``dest`` when generate fails."""
    from medidiff.cli.main import main as medidiff_main

    t0 = time.perf_counter()
    code = medidiff_main(["generate", "--model", str(model), *(["--sr-model", str(sr_model)] if sr_model else []),
                          *(["--masks", str(masks)] if masks else []),
                          *(["--tail-steps", str(tail_steps)] if tail_steps is not None else []),
                          *(["--sampler", sampler] if sampler else []), *(["--steps", str(steps)] if steps else []),
                          "--num", str(num), "--out", str(dest), "--seed", str(seed), "--device", device, "--overwrite",
                          "--no-progress"])
    if code:
        raise SystemExit(f"medidiff generate exited {code} for {dest.name}")
    cases = sorted(d for d in dest.iterdir() if d.is_dir() and d.name.startswith("case_"))
    scores = [background_scores(read_case(c, MODALITIES)) for c in cases]
    return {"seconds": round(time.perf_counter() - t0, 1), "cases": len(cases),
            "shape": list(read_case(cases[0], MODALITIES[:1]).shape[1:]), "background_per_case": scores,
            "background": {k: float(np.mean([s[k] for s in scores])) for k in scores[0]}}


def held_out_cases(out: Path, n: int, fold: int = 0) -> list[Path]:
    """The first ``n`` held-out (``fold``) case folders of OUT/manifest.json (data in OUT/data)."""
    from medidiff.data.manifest import load_manifest

    items = [it for it in load_manifest(out / "manifest.json", out / "data", "training") if it.get("fold") == fold]
    return [Path(it["image"][0]).parent for it in items[:n]]


def real_scores(out: Path, p: dict, n: int) -> dict[str, float]:
    """The background scores of ``n`` held-out real cases through the base model's data pipeline, in [0, 1]."""
    from medidiff.config import load_config
    from medidiff.data.dataset import manifest_datasets

    cfg = load_config(None, [*overrides(p, out, "cpu", True), "data.cache=none"])
    _, val = manifest_datasets(cfg.data, out / "runs" / "real", divisor=1, with_label=False, train_transforms=False)
    rows = []
    for i in range(min(n, len(val))):
        img = val[i]["image"].numpy()  # (M, X, Y, Z) in [-1, 1]
        rows.append(background_scores((img + 1) / 2))
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


def train_and_export(cfg: Any, model_dir: Path) -> tuple[dict[str, Any], Path]:
    """Train ``cfg`` (its stage's trainer) and export its EMA weights to ``model_dir``.
    Returns (steps, seconds, loss summary) and the model folder."""
    from medidiff.training.diffusion import run_dir_of
    from medidiff.training.stages import STAGES

    train_fn, export_fn = STAGES[cfg.stage]()
    t0 = time.perf_counter()
    result = train_fn(cfg, progress=False)
    seconds = time.perf_counter() - t0
    model = export_fn(run_dir_of(cfg), model_dir)
    losses = result.losses
    return {
        "steps": result.final_step, "train_seconds": round(seconds, 1),
        "steps_per_s": round(len(losses) / max(seconds, 1e-9), 2),
        "loss_first_200": float(np.mean(losses[:200])), "loss_last_200": float(np.mean(losses[-200:])),
    }, Path(model)


TIMED_OUT = 124  # side_by_side's exit code for a command stopped at its time limit (coreutils timeout's)


def gpu_envs(names: Sequence[str], gpus: int) -> dict[str, dict[str, str]]:
    """``CUDA_VISIBLE_DEVICES`` for each of ``names``, round-robin over the first ``gpus`` cards this
    process sees (its own ``CUDA_VISIBLE_DEVICES`` list, if set); empty for one card (inherit)."""
    if gpus <= 1:
        return {}
    visible = [d for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    cards = visible[:gpus] if visible else [str(i) for i in range(gpus)]
    if len(cards) < gpus:
        raise ValueError(f"{gpus} GPUs asked for, CUDA_VISIBLE_DEVICES shows {len(cards)}: {','.join(cards)}")
    return {name: {"CUDA_VISIBLE_DEVICES": cards[i % gpus]} for i, name in enumerate(names)}


def side_by_side(commands: dict[str, list[str]], logs: Path, *, timeout_s: float | None = None,
                 envs: dict[str, dict[str, str]] | None = None) -> dict[str, int]:
    """Run every command at once (processes sharing the card as equals), each with its output in
    ``logs/<name>.log``; wait for all and return their exit codes (a failed one's log tail is printed).
    ``envs``: extra environment variables per command (e.g. :func:`gpu_envs`).

    ``timeout_s``: the wall time they share; a command still running then is stopped (SIGTERM, and
    SIGKILL 10 s later) and its code is ``TIMED_OUT``, so a job ends inside its device budget
    instead of being cut off by it with nothing written. Stopping the command's own process is
    enough for what runs here (``medidiff evaluate`` starts no processes of its own)."""
    logs.mkdir(parents=True, exist_ok=True)
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    procs = {}
    for name, cmd in commands.items():
        with open(logs / f"{name}.log", "w") as fh:
            env = {**os.environ, **envs[name]} if envs and name in envs else None
            procs[name] = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)
    codes = {}
    try:
        for name, proc in procs.items():
            try:
                codes[name] = proc.wait(None if deadline is None else max(deadline - time.monotonic(), 0.0))
            except subprocess.TimeoutExpired:
                # the time is up for every command still running: stop them together, so the overrun
                # is one grace period, not one per command
                late = {n: p for n, p in procs.items() if n not in codes and p.poll() is None}
                _stop(list(late.values()))
                for n, p in procs.items():
                    if n not in codes:
                        codes[n] = TIMED_OUT if n in late else p.wait()
                        log(f"{n}: " + (f"stopped at the {timeout_s:.0f} s limit" if n in late else f"exit {codes[n]}"))
                        if codes[n] and n not in late:
                            print((logs / f"{n}.log").read_text()[-3000:], file=sys.stderr, flush=True)
                break
            log(f"{name}: exit {codes[name]}")
            if codes[name]:
                print((logs / f"{name}.log").read_text()[-3000:], file=sys.stderr, flush=True)
    finally:  # interrupted (Ctrl-C, a killed job): no orphan keeps the card busy
        for proc in procs.values():
            if proc.poll() is None:
                proc.terminate()
    return codes


def _stop(procs: Sequence[subprocess.Popen], grace_s: float = 10.0) -> None:
    """SIGTERM to every process, then SIGKILL to those that have not exited ``grace_s`` later (a
    process stuck in a CUDA call may not act on SIGTERM)."""
    for proc in procs:
        proc.terminate()
    end = time.monotonic() + grace_s
    for proc in procs:
        try:
            proc.wait(max(end - time.monotonic(), 0.0))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def device_info(device: str) -> dict[str, str]:
    """The card's name and torch's version, for the record."""
    import torch

    return {"device": torch.cuda.get_device_name() if device.startswith("cuda") else "cpu", "torch": torch.__version__}


def read_case(folder: Path, names: Sequence[str], *, prefix: str = "") -> np.ndarray:
    """(len(names), X, Y, Z) float32 from ``folder/<prefix><name>.nii.gz``."""
    import nibabel as nib

    return np.stack([np.asarray(nib.load(str(folder / f"{prefix}{n}.nii.gz")).dataobj, dtype=np.float32) for n in names])


def comparison_figure(synthetic: Sequence[Path], real: Sequence[Path], path: Path) -> Path:
    """Generated cases (top row: ``case_XXXX`` folders of ``medidiff generate``) beside real ones
    (bottom row: BraTS 2023 case folders), each a full-resolution preview of all four modalities
    with its labels (docs/quality.md's figure)."""
    from medidiff.viz import preview_image, write_png

    def panel(folder: Path, real_case: bool) -> np.ndarray:
        prefix = f"{folder.name}-" if real_case else ""
        label = read_case(folder, ["seg"], prefix=prefix)[0].astype(np.int16)
        tag = "REAL" if real_case else "SYN"
        return preview_image(list(read_case(folder, MODALITIES, prefix=prefix)), label,
                             modalities=[f"{tag} {m.upper()}" for m in MODALITIES])

    rows = [[panel(f, False) for f in synthetic], [panel(f, True) for f in real]]
    height = max(x.shape[0] for row in rows for x in row)
    width = max(x.shape[1] for row in rows for x in row)
    tiles = [np.concatenate([np.pad(x, ((0, height - x.shape[0]), (0, width - x.shape[1]), (0, 0))) for x in row], 1)
             for row in rows if row]
    full = max(t.shape[1] for t in tiles)
    return write_png(path, np.concatenate([np.pad(t, ((0, 0), (0, full - t.shape[1]), (0, 0))) for t in tiles], 0))


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` beside ``path`` and rename it over: a job killed while writing keeps the last
    complete file (reports are rewritten after every phase)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class _RealCases:
    """The real cases of ``manifest`` through the evaluation pipeline of experiment ``config`` (what
    ``medidiff evaluate`` loads), and the pipeline that puts generated sets on the same grid."""

    def __init__(self, config: Path, manifest: Path, root: Path, n_real: int | None,
                 sets: list[str] | None = None, *, train_ids: list[str] | None = None) -> None:
        """``train_ids``: only these training cases, in this order, and no held-out ones (``n_real`` unused)."""
        from medidiff.cli.evaluate_cmd import load_eval_configs
        from medidiff.data.transforms import build_transforms
        from medidiff.eval import data as evdata

        self.evdata = evdata
        exp, self.cfg = load_eval_configs(str(config), sets)
        self.dcfg = evdata.eval_data_config(exp.data, self.cfg.intensity_scale)
        train_items, held_items, label_map = evdata.real_items(manifest, root, exp.data.fold)
        tf = self._real_tf = build_transforms(self.dcfg, train=False, label_map=label_map)
        if train_ids is not None:
            by_id = {it["case_id"]: it for it in train_items}
            missing = [c for c in train_ids if c not in by_id]
            if missing:
                raise SystemExit(f"{manifest}: no training case {missing[0]} (held out, or not in the manifest)")
            train_items, held_items, n_real = [by_id[c] for c in train_ids], [], None
        self.train = evdata.load_cases("real_train", train_items[:n_real], tf, with_label=True, progress=False)
        self.heldout = (evdata.load_cases("real_heldout", held_items[:n_real], tf, with_label=True, progress=False)
                        if held_items else None)
        self._syn_tf = evdata.synthetic_transforms(self.dcfg, background=self.cfg.synthetic_background, with_label=True)

    def synthetic(self, folder: Path) -> Any:
        """A generated folder (``medidiff generate``'s output) as a CaseSet on the evaluation grid: its first
        ``eval.max_synthetic`` cases (sorted; all when unset), as ``medidiff evaluate`` reads it."""
        items = self.evdata.synthetic_items(folder, self.dcfg.modalities, max_cases=self.cfg.max_synthetic)
        return self.evdata.load_cases("synthetic", items, self._syn_tf, with_label=True, progress=False)

    def synthetic_features(self, net: Any, folders: list[Path]) -> Any:
        """``net``'s features (numpy, one row a case) of the generated folders' cases, joined in the folders' order."""
        import numpy as np

        from medidiff.eval import features as feat

        return np.concatenate([feat.extract_features(net, self.synthetic(d).images.float()).numpy() for d in folders])

    def real(self, name: str, items: list[dict[str, Any]]) -> Any:
        """Other real cases of the manifest (``evdata.real_items``' items) through the same pipeline."""
        return self.evdata.load_cases(name, items, self._real_tf, with_label=True, progress=False)

    def feature_net(self, directory: Path, device: str = "cpu") -> Any:
        """The saved feature net at ``directory`` (``medidiff.eval.features``' segmenter encoder) for this grid,
        refused for another grid, spacing, modalities or intensity scale."""
        from medidiff.eval import features as feat

        return feat.saved_feature_net(directory, self.dcfg, device)


def named_folder_sets(args: list[str]) -> dict[str, list[Path]]:
    """Command-line ``NAME=FOLDER[,FOLDER...]`` arguments -> name -> folders (a set generated in several parts)."""
    return {k: [Path(p) for p in v.split(",")] for k, v in (a.split("=", 1) for a in args)}


def realism_checks_of(config: Path, manifest: Path, root: Path, generated: dict[str, Path], n_real: int,
                      out_dir: Path, *, sets: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """The realism checks of ``medidiff evaluate``'s image task (background, power spectrum per band,
    histograms, diversity, brain size, tumour statistics) for each folder of ``generated`` (name -> medidiff
    generate's output), in this process, against the first ``n_real`` real training and held-out
    cases of ``manifest`` (loaded and summarised once for all), all on the grid of experiment
    ``config``'s data section: a set generated on another grid is resampled onto it by the real
    data's pipeline (``sets``: dotted keys set on ``config``, e.g. the intensity scale). Each result goes to
    ``out_dir/<name>.json`` (``{"results": {"realism": ...}}``, as an evaluate report); returns them by name."""
    import json

    from medidiff.eval import real_reference_for, realism_checks_for

    real = _RealCases(config, manifest, root, n_real, sets)
    cfg, dcfg = real.cfg, real.dcfg
    reference = real_reference_for(cfg, real.train.images, real.heldout.images, real_labels=real.train.labels,
                                   heldout_labels=real.heldout.labels)  # once: most of the work
    out_dir.mkdir(parents=True, exist_ok=True)
    results = {}
    for name, folder in generated.items():
        synthetic = real.synthetic(folder)
        r = realism_checks_for(cfg, synthetic.images, reference, modalities=dcfg.modalities,
                               synthetic_labels=synthetic.labels)
        r.pop("spectra", None)
        report = {"cases": {"synthetic": len(synthetic), "real_train": len(real.train), "real_heldout": len(real.heldout)},
                  "grid": {"roi": list(dcfg.roi), "spacing": list(dcfg.spacing)}, "results": {"realism": r}}
        write_atomic(out_dir / f"{name}.json", json.dumps(report, indent=1, default=float))
        log(f"realism {name}: " + ", ".join(
            f"{k} {'no verdict' if v.get('pass', False) is None else 'pass' if v['pass'] else 'fail'}"
            for k, v in r["checks"].items()))
        results[name] = r
    return results


def _float32(features: Any) -> np.ndarray:
    """A feature tensor (on any device) as a float32 array (what the features.npz files keep)."""
    return features.detach().cpu().numpy().astype(np.float32)


def image_evaluations_of(config: Path, manifest: Path, root: Path, generated: dict[str, Path],
                         out_dirs: dict[str, Path], feature_net: Path, *, sets: list[str] | None = None,
                         device: str = "cpu") -> dict[str, str]:
    """``medidiff evaluate``'s image task (the realism checks, MS-SSIM diversity, Frechet / MMD / PRDC beside the
    held-out floor) for each folder of ``generated``, in this process, with the saved ``feature_net``, against
    EVERY real training and held-out case of ``manifest``: the real cases are loaded, and the realism reference
    and their features built, once for all sets, the floor once per count (``medidiff.eval.image_task``; four
    evaluations side by side each did all of it and three were stopped by a 5-minute cap on the H100 host,
    session 50). ``sets``: dotted keys on ``config`` (the scale, ``eval.realism_max_real``, the seed). Each result
    goes to ``out_dirs[name]/report.json`` (``{"results": {"realism": ..., "image": ...}}``, written as evaluate
    writes its report, without its figures), with the feature net's 3D features of its cases in
    ``features.npz`` (``synthetic``: cases x features, in the folder's order), and the real cases' once in
    ``real_features.npz`` beside the first set's folder (``train``, ``heldout``): what a reading on other draws
    of the same cases needs (split halves, picking one run by one draw and judging it on another) without the
    GPU. Returns each set's state: "done", or "failed: ..." (a set that fails does not stop the others)."""
    import json

    from medidiff.eval.features import extract_features
    from medidiff.eval.image_task import ImageReference, image_distances_for, image_realism_for
    from medidiff.eval.report import jsonable

    t0 = time.perf_counter()
    real = _RealCases(config, manifest, root, None, sets)
    net = real.feature_net(feature_net, device)
    reference = ImageReference(real.cfg, net, real.train, real.heldout)
    f_train, _, f_held = reference.features()  # the real cases' features, shared (the floor: with the first set of a count)
    loaded = time.perf_counter() - t0
    if generated:
        real_file = out_dirs[next(iter(generated))].parent / "real_features.npz"
        real_file.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(real_file, train=_float32(f_train),
                            heldout=_float32(f_held) if f_held is not None else np.zeros((0, 0), np.float32))
    states = {}
    for name, folder in generated.items():
        t1 = time.perf_counter()
        try:
            synthetic = real.synthetic(folder)
            realism = image_realism_for(reference, synthetic, real.dcfg.modalities)
            realism.pop("spectra")
            features = extract_features(net, synthetic.images)  # every case's (the report's may be a subset)
            res = {"realism": realism, "image": image_distances_for(reference, synthetic, features)}
            kept = _float32(features)
        except Exception as exc:  # one set's failure must not lose the others
            log(f"image {name}: failed: {type(exc).__name__}: {exc}")
            states[name] = f"failed: {type(exc).__name__}: {exc}"
            continue
        report = {"data": {"cases": {"synthetic": len(synthetic), "real_train": len(real.train),
                                     "real_heldout": len(real.heldout) if real.heldout is not None else 0}},
                  "how": "in process (quality_common.image_evaluations_of): evaluate's image task",
                  "feature_net": net.name, "seconds": {"real side, shared": round(loaded, 1),
                                                       "this set": round(time.perf_counter() - t1, 1)},
                  "results": res}
        out_dirs[name].mkdir(parents=True, exist_ok=True)
        np.savez_compressed(out_dirs[name] / "features.npz", synthetic=kept)
        # as evaluate writes its report (a nan as "nan"), atomically
        write_atomic(out_dirs[name] / "report.json", json.dumps(jsonable(report), indent=1, allow_nan=False))
        fr = res["image"]["distances"]["synthetic_vs_real_train"]["3d"].get("frechet")
        log(f"image {name}: Frechet 3D {fr}, {time.perf_counter() - t1:.0f} s (the real side {loaded:.0f} s, once)")
        states[name] = "done"
    return states


def memorisation_audits_of(config: Path, manifest: Path, root: Path, generated: dict[str, Path],
                           out_dirs: dict[str, Path], *, controls: int | None = None,
                           sets: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """``medidiff evaluate``'s memorisation task (image space) for each folder of ``generated``, in
    this process, against EVERY real training case of ``manifest`` (the cases the models saw) and
    the held-out ones (``controls``: planted copies per kind, default the config's): the real cases
    are loaded, embedded in every form and the planted controls audited once for all sets (six
    evaluations side by side, each doing all of that, ran past a 3.5-min cap on the H200 host). Each
    result goes to ``out_dirs[name]/report.json`` (``{"results": {"memorisation": ...}}``, as an
    evaluate report); returns them by name."""
    import json
    from dataclasses import replace

    from medidiff.eval import memorisation_reference_for, memorisation_results_for

    real = _RealCases(config, manifest, root, None, sets)
    cfg = real.cfg if controls is None else replace(real.cfg, memorisation_controls=controls)  # fewer: smoke runs
    reference = memorisation_reference_for(cfg, real.train, real.heldout)
    results = {}
    for name, folder in generated.items():
        synthetic = real.synthetic(folder)
        res, _ = memorisation_results_for(cfg, reference, synthetic)
        report = {"cases": {"synthetic": len(synthetic), "real_train": len(real.train), "real_heldout": len(real.heldout)},
                  "how": "in process (quality_common.memorisation_audits_of): evaluate's memorisation task",
                  "results": {"memorisation": res}}
        out_dirs[name].mkdir(parents=True, exist_ok=True)
        write_atomic(out_dirs[name] / "report.json", json.dumps(report, indent=1, default=float))
        log(f"memorisation {name}: {res['summary']['flagged']} of {len(synthetic)} flagged "
            f"(max similarity {res['summary']['synthetic_nn_similarity']['max']:.3f}, threshold "
            f"{res['summary']['threshold']:.3f})")
        results[name] = res
    return results
