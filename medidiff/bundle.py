"""MONAI bundles of trained medidiff models: export, and the entry point their inference runs.

``medidiff export RUN -o BUNDLE --format monai-bundle [--sr-run SR_RUN]`` writes::

    BUNDLE/configs/metadata.json         MONAI bundle metadata (versions, task, network_data_format...)
    BUNDLE/configs/inference.json        python -m monai.bundle run --config_file configs/inference.json
    BUNDLE/configs/logging.conf          what ``monai.bundle run`` reads for its log format
    BUNDLE/configs/metadata_schema.json  a JSON schema of the mandatory metadata keys (offline check)
    BUNDLE/models/base/                  a medidiff model folder: config.json, model.safetensors, codec/
    BUNDLE/models/sr/                    the SR stage of a cascade (only with --sr-run)
    BUNDLE/docs/README.md, docs/license.txt

Layout and metadata follow the MONAI Bundle Specification (MONAI's docs/source/mb_specification.rst)
with one deliberate difference: the specification names ``models/model.pt``, a pickled state dict,
and unpickling runs whatever code the file names. medidiff never pickles weights, so ``models/``
holds medidiff model folders (safetensors + JSON) and the entry point loads them with
``from_pretrained``; MONAI tools that expect ``model.pt`` (``ckpt_export``, ``verify_net_in_out``)
do not apply to these bundles.

Inference: ``configs/inference.json`` instantiates :class:`BundleGenerator` (its ``_target_``) with
paths under ``@bundle_root`` and runs it. The generator runs ``medidiff generate``'s own command
on the bundle's model folders, so a bundle writes exactly what ``medidiff generate`` writes (the
same NIfTI, labels, previews, provenance, resume and refusal rules) and gains whatever that command
gains; nothing of the generation loop is repeated here.

Metadata check offline: ``python -m monai.bundle verify_metadata`` downloads the schema named in
``metadata.json`` (MONAI's, from GitHub) unless ``--filepath`` names a file that exists, which it
then reads instead. :data:`METADATA_SCHEMA` (written to ``configs/metadata_schema.json``) is ours,
written from the specification's mandatory keys and tensor-format keys (with MONAI 1.6's
``required_packages_version``, which replaced ``optional_packages_version``), not MONAI's file:
``--filepath configs/metadata_schema.json`` checks a bundle with no network.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any, Literal

from medidiff import __version__
from medidiff.errors import MedidiffError

__all__ = ["METADATA_SCHEMA", "METADATA_SCHEMA_URL", "BundleGenerator", "export_bundle", "bundle_metadata"]

# MONAI's current bundle metadata schema (the one MONAI's model zoo names): what an online
# `verify_metadata` checks against. Not fetched by medidiff.
METADATA_SCHEMA_URL = ("https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/"
                       "meta_schema_20240725.json")
BUNDLE_FORMAT = 1  # medidiff's own layout version, in metadata["medidiff"]["bundle_format"]

_TENSOR = {
    "type": "object",
    # the specification's keys of a tensor format specifier (modality defaults to "n/a" there)
    "required": ["type", "format", "modality", "num_channels", "spatial_shape", "dtype", "value_range",
                 "is_patch_data", "channel_def"],
    "properties": {
        "type": {"type": "string"}, "format": {"type": "string"}, "modality": {"type": "string"},
        "num_channels": {"type": "integer", "minimum": 1},
        "spatial_shape": {"type": "array", "items": {"type": ["integer", "string"]}},
        "dtype": {"type": "string"},
        "value_range": {"type": "array", "items": {"type": "number"}, "maxItems": 2},
        "is_patch_data": {"type": "boolean"},
        "channel_def": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}
_DATA_FORMAT = {
    "type": "object", "required": ["inputs", "outputs"],
    # an input may also be a plain value (a prompt), as MONAI's own schema allows
    "properties": {"inputs": {"type": "object", "additionalProperties": {"anyOf": [_TENSOR, {"type": "string"}]}},
                   "outputs": {"type": "object", "minProperties": 1, "additionalProperties": _TENSOR}},
}
METADATA_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2019-09/schema",
    "title": "MONAI bundle metadata.json: the MONAI Bundle Specification's mandatory keys (medidiff's schema)",
    "type": "object",
    "required": ["schema", "version", "changelog", "monai_version", "pytorch_version", "numpy_version",
                 "required_packages_version", "task", "description", "authors",
                 "copyright", "network_data_format"],
    "properties": {
        **{key: {"type": "string", "minLength": 1} for key in (
            "schema", "version", "monai_version", "pytorch_version", "numpy_version", "task", "description",
            "authors", "copyright", "intended_use", "data_source", "data_type")},
        "changelog": {"type": "object", "additionalProperties": {"type": "string"}},
        "required_packages_version": {"type": "object", "additionalProperties": {"type": "string"}},
        "references": {"type": "array", "items": {"type": "string"}},
        "synthetic": {"type": "boolean"},
        "network_data_format": _DATA_FORMAT,
    },
    # the specification allows one <name>_data_format per further network (here: a cascade's SR stage)
    "patternProperties": {"^[_a-zA-Z0-9]+_data_format$": _DATA_FORMAT},
}

_LOGGING_CONF = """\
[loggers]
keys=root

[handlers]
keys=consoleHandler

[formatters]
keys=fullFormatter

[logger_root]
level=INFO
handlers=consoleHandler

[handler_consoleHandler]
class=StreamHandler
level=INFO
formatter=fullFormatter
args=(sys.stdout,)

[formatter_fullFormatter]
format=%(asctime)s - %(name)s - %(levelname)s - %(message)s
"""


class BundleGenerator:
    """The ``_target_`` of a bundle's ``configs/inference.json``: ``medidiff generate`` over the
    bundle's model folders, with the bundle's keys (``--num_cases 2 --seed 0 --output_dir X
    --steps K`` on the ``monai.bundle run`` command line) as its options.

    Calling it generates and returns the output folder; a user error (a bad key, a missing model
    folder, anything ``medidiff generate`` refuses) prints one line and exits with status 2, as
    the ``medidiff`` command does. :meth:`generate` raises :class:`MedidiffError` instead.
    """

    def __init__(self, model_dir: str, output_dir: str, *, sr_model_dir: str | None = None, num_cases: int = 1,
                 seed: int = 0, steps: int | None = None, sr_steps: int | None = None, batch: int = 1,
                 device: str = "cpu", geometry: Literal["native", "brats"] = "native", masks: str | None = None,
                 prompts: str | None = None, text_encoder: str | None = None, overwrite: bool = False,
                 progress: bool = True, generate_args: Sequence[str] = ()) -> None:
        # Checked when called, not here: MONAI wraps an exception raised while instantiating a
        # `_target_` in a RuntimeError with a traceback, which would bury the one-line message.
        self.model_dir, self.output_dir, self.sr_model_dir = model_dir, output_dir, sr_model_dir
        self.num_cases, self.seed, self.steps, self.sr_steps, self.batch = num_cases, seed, steps, sr_steps, batch
        self.device, self.geometry, self.masks, self.prompts = device, geometry, masks, prompts
        self.text_encoder, self.overwrite, self.progress = text_encoder, overwrite, progress
        self.generate_args = generate_args

    def argv(self) -> list[str]:
        """The ``medidiff generate`` arguments this bundle run stands for (keys checked first)."""
        where = "configs/inference.json"

        def integer(key: str, minimum: int, *, optional: bool = False) -> int | None:
            value = getattr(self, key)
            if value is None and optional:
                return None
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise MedidiffError(f"{where}: {key} must be an integer >= {minimum}, got {value!r} "
                                    f"(override it with --{key} N)")
            return value

        def text(key: str, *, optional: bool = True) -> str | None:
            value = getattr(self, key)
            if value is None and optional:
                return None
            if isinstance(value, (bool, list, tuple, dict)) or value is None or str(value) == "":
                raise MedidiffError(f"{where}: {key} must be a path or name, got {value!r}")
            return str(value)  # `--output_dir 2024` reaches us as the integer 2024

        def flag(key: str) -> bool:
            value = getattr(self, key)
            # `--progress false` reaches us as the string 'false' (fire reads Python literals: False)
            if isinstance(value, str) and value.lower() in ("true", "false"):
                return value.lower() == "true"
            if not isinstance(value, bool):
                raise MedidiffError(f"{where}: {key} must be true or false, got {value!r}")
            return value

        overwrite, progress = flag("overwrite"), flag("progress")
        extra = self.generate_args
        if not isinstance(extra, (list, tuple)) or not all(isinstance(a, str) for a in extra):
            raise MedidiffError(f"{where}: generate_args must be a list of strings (extra `medidiff generate` "
                                f"options, e.g. [\"--label-convention\", \"brats2021\"]), got {extra!r}")
        model, sr_model = Path(text("model_dir", optional=False)), text("sr_model_dir")
        for key, folder in (("model_dir", model), ("sr_model_dir", sr_model)):
            if folder is not None and not (Path(folder) / "config.json").is_file():
                raise MedidiffError(f"{where}: {key} {folder} holds no medidiff model (no config.json): run from "
                                    "the bundle folder or pass --bundle_root BUNDLE")
        if self.geometry not in ("native", "brats"):
            raise MedidiffError(f"{where}: geometry must be 'native' (the model grid) or 'brats' (240x240x155 at "
                                f"1 mm), got {self.geometry!r}")
        if self.sr_steps is not None and sr_model is None:
            raise MedidiffError(f"{where}: sr_steps is for a cascade's SR stage; this bundle has no SR model "
                                "(sr_model_dir is null)")
        argv = ["--model", str(model), "--out", text("output_dir", optional=False),
                "--num", str(integer("num_cases", 1)), "--seed", str(integer("seed", 0)),
                "--batch", str(integer("batch", 1)), "--device", text("device", optional=False),
                "--geometry", text("geometry", optional=False)]
        steps, sr_steps = integer("steps", 1, optional=True), integer("sr_steps", 1, optional=True)
        optional = {"--sr-model": sr_model, "--steps": steps, "--sr-steps": sr_steps, "--masks": text("masks"),
                    "--prompts": text("prompts"), "--text-encoder": text("text_encoder")}
        for option, value in optional.items():
            if value is not None:
                argv += [option, str(value)]
        if overwrite:
            argv.append("--overwrite")
        if not progress:
            argv.append("--no-progress")
        return argv + list(extra)

    def generate(self) -> Path:
        """Run ``medidiff generate`` with :meth:`argv`; raises MedidiffError on a user error."""
        from medidiff.cli import generate_cmd

        parser = argparse.ArgumentParser(prog="medidiff")
        generate_cmd.register(parser.add_subparsers(dest="command"))
        args = parser.parse_args(["generate", *self.argv()])  # bad generate_args: argparse's usage, exit 2
        args.func(args)
        return Path(args.out)

    def __call__(self) -> Path:
        from medidiff.files import terminate_on_sigterm

        terminate_on_sigterm()  # a SIGTERM unwinds, so half-written files are removed as under `medidiff`
        try:
            return self.generate()
        except MedidiffError as exc:
            print(f"medidiff: error: {exc}", file=sys.stderr)
            raise SystemExit(2) from None


def _versions(packages: Sequence[str]) -> dict[str, str]:
    """Installed versions of ``packages`` (medidiff's own from the imported module); absent ones left out."""
    out = {}
    for name in packages:
        if name == "medidiff":
            out[name] = __version__
            continue
        try:
            out[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            pass
    return out


def _tensor(kind: str, fmt: str, modality: str, channels: dict[int | str, str], shape: Sequence[int], dtype: str,
            value_range: Sequence[float], *, num_channels: int | None = None) -> dict[str, Any]:
    """A tensor format specifier; ``channels`` maps channel indices (label values for a
    'segmentation', whose one channel holds them) to what they hold."""
    return {"type": kind, "format": fmt, "modality": modality,
            "num_channels": len(channels) if num_channels is None else num_channels,
            "spatial_shape": [int(s) for s in shape], "dtype": dtype, "value_range": list(value_range),
            "is_patch_data": False, "channel_def": {str(i): d for i, d in channels.items()}}


def _latent(shape: Sequence[int], codec_type: str) -> dict[str, Any]:
    """The starting noise of sampling, one entry for all its channels (a wavelet latent has 8 per image channel)."""
    what = f"{codec_type} latent channels: unit Gaussian noise drawn from the case's seed, denoised by the model"
    return _tensor("image", "latent", "n/a", {f"0-{shape[0] - 1}": what}, shape[1:], "float32", [],
                   num_channels=int(shape[0]))


# What each BraTS modality name is, for channel_def (FIELD-NOTES: t1n=T1, t1c=T1Gd, t2w=T2, t2f=FLAIR).
_MODALITY_NAMES = {"t1n": "T1-weighted (native)", "t1c": "T1-weighted, gadolinium contrast",
                   "t2w": "T2-weighted", "t2f": "T2-FLAIR"}


def bundle_metadata(base_dir: str | Path, sr_dir: str | Path | None = None, *, version: str = "0.1.0",
                    authors: str | None = None, copyright: str | None = None) -> dict[str, Any]:
    """metadata.json of a bundle of the model folder ``base_dir`` (and SR model folder ``sr_dir``).

    Loads the weights (so a bundle whose weights do not match their config is refused at export),
    never a text encoder: a text-conditioned bundle is run with a local encoder (``--text_encoder``).
    """
    import monai
    import numpy
    import torch

    from medidiff.data.brats import LABEL_CONVENTIONS
    from medidiff.generation import KIND, DiffusionPipeline, load_model_folder

    base_meta = json.loads((Path(base_dir) / "config.json").read_text())
    cfg, net_cfg, net, codec, model_hash = load_model_folder(base_dir, KIND)
    base = DiffusionPipeline(cfg, net_cfg, net, codec, model_hash=model_hash)
    hashes = {"base_model_hash": model_hash}  # what each case's provenance.json records as model_hash
    pipe: Any = base
    sr_meta = None
    if sr_dir is not None:
        from medidiff.cascade.pipeline import CascadePipeline, SRPipeline

        pipe = CascadePipeline(base, SRPipeline.from_pretrained(sr_dir))  # refuses stages that do not chain
        sr_meta = json.loads((Path(sr_dir) / "config.json").read_text())
        hashes["sr_model_hash"] = pipe.sr.model_hash
    out_cfg = pipe.cfg  # a cascade's output grid, modalities and conditioning are the SR stage's
    channels, *grid = pipe.image_shape
    modalities = list(out_cfg.data.modalities)
    convention = base_meta.get("label_convention") or "brats2023"
    labels = LABEL_CONVENTIONS[convention]
    spacing = [s * out_cfg.data.downsample for s in out_cfg.data.spacing]
    base_latent = base.codec.latent_shape(base.image_shape)
    text = base_meta.get("text_encoder")

    inputs: dict[str, Any] = {"noise": _latent(base_latent, cfg.latent.type)}
    if cfg.conditioning.mask:
        inputs["mask"] = _tensor("image", "classes", "n/a", {0: "WT", 1: "TC", 2: "ET"}, grid, "uint8", [0, 1])
    if text:
        inputs["prompt"] = "str: one text prompt per case (--prompts FILE)"
    outputs = {"image": _tensor("image", "magnitude", "MR", {i: f"{m}: {_MODALITY_NAMES.get(m, m)}"
                                                            for i, m in enumerate(modalities)},
                                grid, "float32", [0, 1])}
    if out_cfg.conditioning.generate_labels or out_cfg.conditioning.mask:
        outputs["label"] = _tensor("image", "segmentation", "n/a", dict(labels), grid, "uint8",
                                   [min(labels), max(labels)], num_channels=1)
    data_formats: dict[str, Any] = {"network_data_format": {"inputs": inputs, "outputs": outputs}}
    if sr_dir is not None:
        sr = pipe.sr
        sr_latent = sr.codec.latent_shape(sr.high_res_shape)
        low = sr.low_res_shape
        data_formats["sr_data_format"] = {
            "inputs": {"noise": _latent(sr_latent, sr.cfg.latent.type),
                       "low_res": _tensor("image", "magnitude", "MR", {i: f"base stage channel {i}" for i in range(low[0])},
                                          low[1:], "float32", [-1, 1])},
            "outputs": {"image": _tensor("image", "magnitude", "MR", {i: f"channel {i}" for i in range(channels)},
                                         grid, "float32", [-1, 1])}}

    stages = f"a base model ({cfg.name}, step {base_meta.get('step')})" + (
        f" and a super-resolution stage ({sr_meta['config'].get('name')}, x{pipe.sr.scale}, step {sr_meta.get('step')})"
        if sr_meta else "")
    what = (f"{'/'.join(modalities)} volumes" + (" with tumour labels" if "label" in outputs else ""))
    cond = ", ".join(n for n, on in (("label-mask conditioned (--masks)", cfg.conditioning.mask),
                                     ("text conditioned (--prompts)", bool(text))) if on) or "unconditional"
    trained_on = [f"{stage}: manifest sha256 {rec.get('manifest_sha256') or 'unknown'}, held-out fold "
                  f"{rec.get('fold') if rec.get('fold') is not None else 'none'}"
                  for stage, rec in (("base", base_meta.get("training_data") or {}),
                                     ("sr", (sr_meta or {}).get("training_data") or {})) if rec]
    return {
        "schema": METADATA_SCHEMA_URL,
        "version": version,
        "changelog": {version: f"exported by medidiff {__version__}: {stages}, {base_meta.get('weights')} weights"},
        "monai_version": monai.__version__,
        "pytorch_version": torch.__version__,
        "numpy_version": numpy.__version__,
        # fire: `python -m monai.bundle` is a fire command line. No optional_packages_version: MONAI 1.6
        # renames that key to required_packages_version on load, replacing this one
        "required_packages_version": _versions(["medidiff", "nibabel", "safetensors", "fire"]),
        "task": f"Generation of synthetic 3D brain MRI ({what})",
        "description": (f"A medidiff 3D latent diffusion model ({cfg.objective.type} objective, {cfg.latent.type} "
                        f"codec; {stages}), {cond}. Each case is {len(modalities)} modalities"
                        f"{' and a label map' if 'label' in outputs else ''} of {' x '.join(map(str, grid))} voxels at "
                        f"{' x '.join(f'{s:g}' for s in spacing)} mm, written as NIfTI with a preview and provenance, "
                        f"exactly as `medidiff generate` writes them. Weights are safetensors in "
                        f"medidiff model folders under models/ (no pickled model.pt)."),
        "authors": authors or "not stated (export with --authors)",
        "copyright": copyright or "not stated (export with --copyright)",
        "intended_use": ("Research: synthetic cases for developing and training segmentation and other models. "
                         "Every output is synthetic (not a patient) and is stamped so in its NIfTI header and "
                         "provenance. Not for diagnostic or clinical use."),
        "data_source": ("Trained with medidiff on a manifest recorded by hash only (no paths): " + "; ".join(trained_on)
                        if trained_on else "not recorded"),
        "data_type": "nibabel",
        "synthetic": True,
        "references": [],
        **data_formats,
        "medidiff": {"bundle_format": BUNDLE_FORMAT, "base_model": "models/base",
                     "sr_model": "models/sr" if sr_dir is not None else None, **hashes,
                     "label_convention": convention, "text_encoder_required": bool(text)},
    }


def inference_config(*, cascade: bool) -> dict[str, Any]:
    """configs/inference.json. Every key of :class:`BundleGenerator` is a top-level key, so that
    ``monai.bundle run --KEY VALUE`` overrides it; the ones a model cannot use (``sr_steps``
    without an SR stage, ``prompts`` without text conditioning) stay, as null, so that giving them
    is refused by name rather than ignored (MONAI adds an unknown override key silently)."""
    keys = ["model_dir", "output_dir", "sr_model_dir", "num_cases", "seed", "steps", "sr_steps", "batch", "device",
            "geometry", "masks", "prompts", "text_encoder", "overwrite", "progress", "generate_args"]
    return {
        "bundle_root": ".",
        "device": "cpu",
        "num_cases": 1,
        "seed": 0,
        "steps": None,  # null: the model's own sampler config
        "sr_steps": None,
        "batch": 1,
        "geometry": "native",
        "masks": None,
        "prompts": None,
        "text_encoder": None,  # text-conditioned models: a local encoder folder (none is in the bundle)
        "overwrite": False,
        "progress": True,
        "generate_args": [],
        "output_dir": "$@bundle_root + '/generated'",
        "model_dir": "$@bundle_root + '/models/base'",
        "sr_model_dir": "$@bundle_root + '/models/sr'" if cascade else None,
        "generator": {"_target_": "medidiff.bundle.BundleGenerator", **{k: f"@{k}" for k in keys}},
        "run": ["$@generator()"],
    }


def _readme(meta: dict[str, Any], cascade: bool, text: bool) -> str:
    fmt = meta["network_data_format"]["outputs"]["image"]
    overrides = "--num_cases 2 --seed 0 --output_dir generated --steps 30" + (" --sr_steps 30" if cascade else "")
    return f"""# {meta['task']}

{meta['description']}

Intended use: {meta['intended_use']}

Training data: {meta['data_source']}.

## Run

```bash
pip install "medidiff[bundle]=={meta['required_packages_version']['medidiff']}"   # [bundle]: fire (MONAI's command line), jsonschema
cd THIS_BUNDLE
python -m monai.bundle run --config_file configs/inference.json {overrides}
# from elsewhere: add --bundle_root THIS_BUNDLE; on a GPU: --device cuda
```

Each case is written as `medidiff generate` writes it: `case_XXXX/{{{','.join(m.split(':')[0] for m in fmt['channel_def'].values())}{',seg' if 'label' in meta['network_data_format']['outputs'] else ''}}}.nii.gz`,
`preview.png` and `provenance.json` (model hash, seed, sampler, steps). Case i uses seed + i; a re-run
skips finished cases that match and refuses a folder made by another request (`--overwrite true`
replaces them). Keys of `configs/inference.json` that a run overrides: `num_cases`, `seed`, `steps`,
{'`sr_steps`, ' if cascade else ''}`batch`, `device`, `geometry` (`native` or `brats`: 240x240x155 at 1 mm), `masks` (a folder of
label maps, for mask-conditioned models), {'`prompts`, `text_encoder` (a LOCAL text encoder folder: none is included), ' if text else ''}`output_dir`, `overwrite`, `progress`, and
`generate_args` (any further `medidiff generate` options, as a list:
`--generate_args '["--label-convention", "brats2021"]'`).

`monai.bundle run` evaluates the config's `_target_` and `$` expressions as Python (MONAI warns
so on every run): this one only instantiates `medidiff.bundle.BundleGenerator`; check that a
bundle you were sent still does before you run it.

The same models run without MONAI: `medidiff generate --model models/base{' --sr-model models/sr' if cascade else ''} --num 2 --out generated`.

## Files

- `models/base/`{' and `models/sr/`' if cascade else ''}: medidiff model folders (`config.json`, `model.safetensors`,
  `codec/`). There is no `models/model.pt`: weights are never pickled (loading a pickle runs code).
- `configs/metadata.json`: MONAI bundle metadata. Check it offline with
  `python -m monai.bundle verify_metadata --meta_file configs/metadata.json --filepath configs/metadata_schema.json`
  (medidiff's schema of the specification's mandatory keys; with `--filepath` naming a file that does not
  exist yet, MONAI downloads its own schema from the URL in `metadata.json` instead).
- `docs/license.txt`: terms.
"""


def _license(meta: dict[str, Any]) -> str:
    return f"""Copyright: {meta['copyright']}
Authors: {meta['authors']}

The weights in models/ were trained with medidiff (Apache License 2.0) by the authors above, on
the data described in configs/metadata.json (data_source). Terms of that data (e.g. a BraTS data
use agreement) may restrict how these weights and the cases they generate may be shared or used:
the authors of this bundle state them here or in its README.

Outputs are synthetic images, not data of any patient, and are not for diagnostic use.
"""


def _is_bundle(folder: Path) -> bool:
    try:
        return "medidiff" in json.loads((folder / "configs" / "metadata.json").read_text())
    except (OSError, ValueError, TypeError):
        return False


def export_bundle(run_dir: str | Path, out_dir: str | Path, *, sr_run: str | Path | None = None,
                  weights: Literal["ema", "model"] = "ema", version: str = "0.1.0", authors: str | None = None,
                  copyright: str | None = None) -> Path:
    """Write a MONAI bundle of the diffusion run ``run_dir`` (and the SR run ``sr_run``: a cascade).

    The model folders are what ``medidiff export`` writes for each run. ``out_dir`` is replaced as
    a whole once the new bundle is complete: a failed export leaves the previous bundle as it was.
    """
    from medidiff.cascade.sr_task import export_sr
    from medidiff.files import staged_dir, write_text_atomic
    from medidiff.generation import export_run

    if not isinstance(version, str) or not version.strip():
        raise MedidiffError(f"--bundle-version must be a non-empty version string, got {version!r}")
    out = Path(out_dir)
    if out.is_dir() and any(out.iterdir()) and not _is_bundle(out):
        # the export replaces out_dir as a whole: never a folder that holds something else
        raise MedidiffError(f"-o {out}: a non-empty folder that is not a medidiff bundle (no configs/metadata.json "
                            "with a 'medidiff' record); choose a new folder")
    with staged_dir(out_dir) as stage:
        base = export_run(run_dir, stage / "models" / "base", weights=weights)
        sr = export_sr(sr_run, stage / "models" / "sr", weights=weights) if sr_run is not None else None
        meta = bundle_metadata(base, sr, version=version, authors=authors, copyright=copyright)
        text = bool(meta["medidiff"]["text_encoder_required"])
        files = {
            "configs/metadata.json": json.dumps(meta, indent=2),
            "configs/inference.json": json.dumps(inference_config(cascade=sr is not None), indent=2),
            "configs/logging.conf": _LOGGING_CONF,
            "configs/metadata_schema.json": json.dumps(METADATA_SCHEMA, indent=2),
            "docs/README.md": _readme(meta, sr is not None, text),
            "docs/license.txt": _license(meta),
        }
        for name, content in files.items():
            write_text_atomic(stage / name, content + ("" if content.endswith("\n") else "\n"))
    return Path(out_dir)
