"""Trained diffusion models as pipelines: export a run, load it anywhere, generate cases.

A model folder (written by ``medidiff export`` / :func:`export_run`)::

    MODEL/config.json          {"kind": "medidiff.diffusion", "config": <experiment>, "net": ..., ...}
    MODEL/model.safetensors    denoiser weights (EMA by default)
    MODEL/codec/               the latent codec with its fitted statistics

loads with :meth:`DiffusionPipeline.from_pretrained` on a CPU-only machine: no DeepSpeed, no
``torch.load``. ``medidiff generate`` is a thin loop over this class.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.profiler import record_function

from medidiff.config import ConfigError, config_hash, from_dict
from medidiff.data.brats import BRATS_AFFINE, BRATS_SHAPE, convention_of_label_map, regions_to_labels
from medidiff.data.config import DataConfig, intensity_scale
from medidiff.data.geometry import to_reference_grid
from medidiff.data.mask_sources import training_data_record
from medidiff.errors import MedidiffError
from medidiff.experiment import ExperimentConfig
from medidiff.files import file_sha256, staged_dir, write_text_atomic
from medidiff.latents import LatentCodec, load_codec
from medidiff.nets import build_net
from medidiff.nets.config import NetConfig
from medidiff.objectives import build_objective
from medidiff.samplers import sample
from medidiff.samplers.config import RECORDED_WHEN_SET, SamplerConfig
from medidiff.training import checkpoint as ckpt
from medidiff.training.diffusion import NUM_REGIONS, mask_to_latent_grid, split_generated

__all__ = ["recorded_training_data", "GeneratedCase", "ModelPipeline", "DiffusionPipeline", "export_run", "load_model_folder", "image_space_clamp", "file_hash",
           "ReferenceGrid", "reference_grid", "regions_to_labels", "grid_affine", "place_in_grid", "brats_placement"]

KIND = "medidiff.diffusion"


def grid_affine(shape: Sequence[int], spacing: Sequence[float], centre: Sequence[float]) -> np.ndarray:
    """RAS affine of a grid of ``shape`` and ``spacing`` whose centre sits at world ``centre``."""
    aff = np.diag([*map(float, spacing), 1.0])
    half = (np.asarray(shape, float) - 1) / 2 * np.asarray(spacing, float)
    aff[:3, 3] = np.asarray(centre, float) - half
    return aff


@dataclass(frozen=True)
class ReferenceGrid:
    """A reference case's original grid, and where the model grid sits in it for that case."""

    model_affine: np.ndarray  # voxel -> world of the model grid (the case after the data pipeline)
    affine: np.ndarray  # voxel -> world of the case's own files
    shape: tuple[int, int, int]


def reference_grid(item: dict[str, Any], cfg: ExperimentConfig, *, label_map: dict[int, int] | None = None
                   ) -> ReferenceGrid:
    """The grid of a real case (a manifest item): generated volumes placed with it land where the
    data pipeline took that case's brain from, in its own affine, spacing and shape."""
    from medidiff.data.geometry import processed_geometry, reference_geometry

    model_affine, model_shape = processed_geometry(item, cfg.data, label_map=label_map)
    expected = tuple(r // cfg.data.downsample for r in cfg.data.roi)
    if tuple(model_shape) != expected:
        raise MedidiffError(f"reference case {item.get('case_id')}: the data pipeline gives {model_shape}, the "
                            f"model generates {expected}")
    affine, shape = reference_geometry(item["image"][0], max_voxels=cfg.data.max_voxels)
    return ReferenceGrid(model_affine=model_affine, affine=affine, shape=tuple(shape))


def place_in_grid(volume: np.ndarray, spacing: Sequence[float],
                  geometry: Literal["native", "brats"] | ReferenceGrid, *, label: bool = False
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Put a generated (X, Y, Z) RAS volume into its output grid: 'native' keeps the model grid
    (centred on the world origin); 'brats' resamples into 240x240x155 at 1 mm with the BraTS
    affine, centred on the BraTS volume centre and aligned with its voxels (:func:`brats_placement`); a :class:`ReferenceGrid` resamples into a real
    case's grid (the inverse of the data pipeline's spatial steps)."""
    mode = "nearest" if label else "bilinear"
    if isinstance(geometry, ReferenceGrid):
        out = to_reference_grid(volume, geometry.model_affine, geometry.affine, geometry.shape, mode=mode,
                                background=0.0)
        return out, geometry.affine.copy()
    if geometry == "native":
        return volume, grid_affine(volume.shape, spacing, (0.0, 0.0, 0.0))
    out = to_reference_grid(volume, brats_placement(volume.shape, spacing), BRATS_AFFINE, BRATS_SHAPE, mode=mode,
                            background=0.0)
    return out, BRATS_AFFINE.copy()


def brats_placement(shape: Sequence[int], spacing: Sequence[float]) -> np.ndarray:
    """RAS affine of a generated grid placed in the BraTS grid: centred, then shifted by less than
    one voxel so that its voxel 0 sits ON a BraTS voxel centre.

    Centring alone puts an even-sized grid half a voxel off the BraTS lattice in z (155 is odd),
    and every output slice then averaged two generated slices (labels moved 0.5 mm). Snapped, a
    grid at whole-millimetre spacing lands voxel for voxel: 1 mm volumes are copied exactly.
    """
    centre = (BRATS_AFFINE @ np.array([*((np.array(BRATS_SHAPE) - 1) / 2), 1.0]))[:3]
    src = grid_affine(shape, spacing, centre)
    first = np.linalg.solve(BRATS_AFFINE, src[:, 3])[:3]  # BraTS voxel index of our voxel 0
    src[:3, 3] = (BRATS_AFFINE @ np.array([*np.floor(first + 0.5), 1.0]))[:3]
    return src


@dataclass
class GeneratedCase:
    seed: int
    images: np.ndarray  # (M, X, Y, Z) float32 in [-1, 1], RAS, model grid
    label: np.ndarray | None  # (X, Y, Z) uint8 labels {0,1,2,3}
    modalities: list[str]
    prompt: str | None = None  # text-conditioned models: the prompt it was generated from


def read_model_config(directory: str | Path, kind: str) -> tuple[ExperimentConfig, NetConfig]:
    """The experiment and net configs of a model folder of ``kind``, validated (the experiment's
    cross-section checks included); no weights are read."""
    directory = Path(directory)
    cfg_path = directory / "config.json"
    if not cfg_path.is_file():
        raise MedidiffError(f"{directory}: not a medidiff model folder (no config.json); "
                            "make one with `medidiff export RUN -o DIR`")
    meta = json.loads(cfg_path.read_text())
    if meta.get("kind") != kind:
        raise MedidiffError(f"{cfg_path}: a {meta.get('kind')!r} model, not {kind!r}")
    try:
        cfg = from_dict(ExperimentConfig, meta["config"], source=str(cfg_path))
        # the net is built from the "net" record, never from config["net"]: that one keeps what the
        # YAML said (e.g. time_scale 1000.0, the old default, which training replaced by 1.0)
        net_cfg = from_dict(NetConfig, meta["net"], source=f"{cfg_path}: net")
    except KeyError as exc:
        raise ConfigError(f"{cfg_path}: missing {exc}") from exc
    return cfg, net_cfg


def load_model_folder(directory: str | Path, kind: str) -> tuple[ExperimentConfig, NetConfig, torch.nn.Module,
                                                                 LatentCodec, str]:
    """Read a model folder of ``kind``: (experiment config, net config, net with weights, codec,
    hash of the weights file). Shared by every pipeline."""
    directory = Path(directory)
    cfg, net_cfg = read_model_config(directory, kind)
    net = build_net(net_cfg)
    weights_path = directory / "model.safetensors"
    missing, unexpected = net.load_state_dict(ckpt.load_tensors(weights_path), strict=False)
    if missing or unexpected:
        raise MedidiffError(f"{weights_path}: does not match the config "
                            f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    return cfg, net_cfg, net.eval(), load_codec(directory / "codec"), file_hash(weights_path)


def image_space_clamp(codec: LatentCodec) -> Callable[[torch.Tensor], torch.Tensor]:
    """x0 -> encode(clamp(decode(x0), -1, 1)): clip the x0 prediction in data space.

    Clamping normalised latent coefficients to [-1, 1] would cut most of the signal (each channel
    has unit std); WDM likewise clamps after the inverse DWT.
    """
    return lambda z: codec.encode(codec.decode(z).clamp(-1, 1))


def sampler_extras(sampler: SamplerConfig, prefix: str = "") -> dict[str, Any]:
    """The sampler options a case's provenance records only where they are not 0 (RECORDED_WHEN_SET: so cases
    written before they were recorded still match a default request): eta and the grid's tail steps."""
    return {prefix + k: getattr(sampler, k) for k in RECORDED_WHEN_SET if getattr(sampler, k)}


def file_hash(path: Path) -> str:
    """16 hex digits of :func:`medidiff.files.file_sha256`: how provenance records a file."""
    return file_sha256(path)[:16]


class ModelPipeline:
    """A trained denoiser + codec + objective loaded from a model folder of kind ``KIND``."""

    KIND = ""

    def __init__(self, cfg: ExperimentConfig, net_cfg: NetConfig, net: torch.nn.Module, codec: LatentCodec,
                 *, model_hash: str = "untracked") -> None:
        self.cfg, self.net_cfg, self.net, self.codec = cfg, net_cfg, net.eval(), codec
        # the codec's channel names spread per-channel settings (x0_skip_sigmas) as in training
        self.objective = build_objective(cfg.objective, getattr(codec, "channel_names", None))
        self.model_hash = model_hash

    @classmethod
    def from_pretrained(cls, directory: str | Path, *, device: str | torch.device = "cpu"):
        cfg, net_cfg, net, codec, model_hash = load_model_folder(directory, cls.KIND)
        return cls(cfg, net_cfg, net.to(device), codec.to(device), model_hash=model_hash)

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    @property
    def sampler_config(self) -> SamplerConfig:
        """The sampler that ``__call__``'s ``sampler`` argument defaults to (this model's config)."""
        return self.cfg.sampler

    def compile(self) -> ModelPipeline:
        """``torch.compile`` the denoiser, block by block where it can (medidiff's UNet3D; another net
        whole). On an H200 a 30+30-step cascade case went 2.46 s eager -> 1.60 s
        (benchmarks/results/session9_h200x2_20261130); the first case pays the compilation."""
        blocks = getattr(self.net, "compile_blocks", None)
        if blocks is not None:
            blocks()
        else:
            self.net.compile()
        return self


class DiffusionPipeline(ModelPipeline):
    """A trained diffusion model, callable to generate cases."""

    KIND = KIND
    text: Any = None  # a TextEncoder for text-conditioned models

    @classmethod
    def from_pretrained(cls, directory: str | Path, *, device: str | torch.device = "cpu",
                        text_encoder: str | Path | None = None) -> DiffusionPipeline:
        """Load a model folder; a text-conditioned model also loads its frozen text encoder from
        the recorded local path (or ``text_encoder``), refusing one whose files differ."""
        pipe = super().from_pretrained(directory, device=device)
        record = json.loads((Path(directory) / "config.json").read_text()).get("text_encoder")
        if record:
            from medidiff.conditioning.text import TextEncoder

            path = text_encoder or record["path"]
            pipe.text = TextEncoder.from_pretrained(path, device=device, max_length=record.get("max_length"))
            if pipe.text.encoder_hash != record["hash"]:
                raise MedidiffError(f"text encoder {path} (hash {pipe.text.encoder_hash}) is not the one this model "
                                    f"was trained with (hash {record['hash']})")
        elif text_encoder is not None:
            raise MedidiffError(f"{directory}: this model is not text-conditioned: drop the text encoder")
        return pipe

    @property
    def image_shape(self) -> tuple[int, ...]:
        """(C, X, Y, Z) that the model generates in image space."""
        spatial = tuple(r // self.cfg.data.downsample for r in self.cfg.data.roi)
        return (self.codec.in_channels, *spatial)

    def provenance(self, seed: int, sampler: SamplerConfig) -> dict[str, Any]:
        # the intensity scale says what a written voxel means: (x + 1) / 2 of the scale the model trained on
        # (outside_tumour with top 0: the normal brain in [0, 0.5], tumours above it). Recorded only where it is not
        # the brain's default, as sampler_extras: folders written before it was recorded still resume
        scale = intensity_scale(self.cfg.data)
        return {"generator": "medidiff.DiffusionPipeline", "model_hash": self.model_hash,
                "config_hash": config_hash(self.cfg), "experiment": self.cfg.name, "seed": int(seed),
                "sampler": sampler.name, "steps": sampler.num_steps, "guidance_scale": sampler.guidance_scale,
                "objective": self.cfg.objective.type,
                **({"intensity_scale": scale} if scale != intensity_scale(DataConfig()) else {}),
                **sampler_extras(sampler)}

    @torch.no_grad()
    def __call__(self, seeds: Sequence[int], *, masks: torch.Tensor | None = None,
                 sampler: SamplerConfig | None = None, prompts: Sequence[str] | None = None) -> list[GeneratedCase]:
        """Generate one case per seed (the same seed gives the same case, alone or in a batch).

        masks: (B, 3, X, Y, Z) WT/TC/ET in {0, 1}, required iff the model is mask-conditioned.
        prompts: one per seed, required iff the model is text-conditioned.
        """
        sampler = sampler or self.cfg.sampler
        self.cfg.check_sampler(sampler)  # a sampler given now (generate --sampler/--steps/--guidance)
        c, *spatial = self.image_shape
        if self.cfg.conditioning.mask and masks is None:
            raise MedidiffError("this model is mask-conditioned: give masks (--masks DIR or manifest)")
        cond: dict[str, torch.Tensor] = {}
        if masks is not None:
            if not self.cfg.conditioning.mask:
                raise MedidiffError("this model was not trained with mask conditioning: drop --masks")
            if tuple(masks.shape[1:]) != (NUM_REGIONS, *spatial) or masks.shape[0] != len(seeds):
                raise MedidiffError(f"masks have shape {tuple(masks.shape)}; expected ({len(seeds)}, 3, {', '.join(map(str, spatial))})")
            cond["cond_image"] = mask_to_latent_grid(self.codec, masks.to(self.device).float() * 2 - 1)
        null = None
        if self.text is not None:
            if prompts is None or len(prompts) != len(seeds):
                raise MedidiffError(f"this model is text-conditioned: give one prompt per case ({len(seeds)}), "
                                    "e.g. --prompts FILE")
            from medidiff.conditioning.text import text_condition

            cond.update(text_condition(list(prompts), self.text, self.device))
            null = {k: v.to(self.device) for k, v in self.text.null_cond().items()}
        elif prompts is not None:
            raise MedidiffError("this model is not text-conditioned: drop the prompts")
        latent = self.codec.latent_shape((c, *spatial))
        clamp = image_space_clamp(self.codec) if sampler.clip_x0 else None
        # profiler ranges (no cost unless a profiler runs): where a generated case's time goes
        with record_function("medidiff/base_sample"):
            z = sample(self.objective, self.net, (len(seeds), *latent), config=replace(sampler, clip_x0=False),
                       seeds=list(seeds), cond=cond or None, device=self.device, x0_transform=clamp,
                       null_cond=null, guidance_keys=self.cfg.objective.cond_drop_keys)
        with record_function("medidiff/base_decode"):
            x = self.codec.decode(z).clamp(-1, 1).float().cpu().numpy()  # (B, C, X, Y, Z)
        out = []
        for i, seed in enumerate(seeds):
            images, generated = split_generated(x[i], self.cfg)  # cut to its brain (conditioning.generate_brain)
            if generated is not None:
                label = regions_to_labels(generated)
            elif masks is not None:
                label = regions_to_labels(masks[i].cpu().numpy())
            else:
                label = None
            out.append(GeneratedCase(seed=int(seed), images=images, label=label,
                                     modalities=list(self.cfg.data.modalities),
                                     prompt=None if prompts is None else prompts[i]))
        return out


def recorded_training_data(model_dir: str | Path) -> dict[str, Any] | None:
    """The model folder's ``training_data`` record (written by :func:`export_run`), if any."""
    meta = json.loads((Path(model_dir) / "config.json").read_text())
    return meta.get("training_data")


def training_label_convention(config: dict[str, Any]) -> str | None:
    """The label convention of a run's training data (its manifest's label_map: 2021 data map
    4 -> 3), or None when the manifest cannot be read (generate then needs --label-convention
    or says it assumed brats2023)."""
    from medidiff.data.manifest import label_map_of, read_manifest

    manifest = (config.get("data") or {}).get("manifest")
    if not manifest:
        return None
    try:
        return convention_of_label_map(label_map_of(read_manifest(manifest)))
    except MedidiffError:
        return None


def _is_model_folder(folder: Path) -> bool:
    """A folder an export wrote (and may replace): config.json holding a medidiff model ``kind``
    (another tool's config with a ``kind`` key is not one)."""
    try:
        meta = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and str(meta.get("kind", "")).startswith("medidiff.")


def export_run(run_dir: str | Path, out_dir: str | Path, *, weights: Literal["ema", "model"] = "ema",
               kind: str = KIND) -> Path:
    """Consolidate the newest complete checkpoint of a run of ``kind`` into a model folder.

    The checkpoint's ``model.safetensors`` already holds full (gathered) weights whatever the
    ZeRO stage, so export needs neither DeepSpeed nor a GPU. ``out_dir`` is replaced as a whole
    once the new folder is complete (:func:`medidiff.files.staged_dir`).
    """
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    latest = ckpt.latest_complete(ckpt.checkpoint_root(run_dir))
    if latest is None:
        raise MedidiffError(f"{run_dir}: no complete checkpoint under {ckpt.checkpoint_root(run_dir)}")
    state = ckpt.read_state(latest)
    record = state.get("record") or {}
    if record.get("kind") != kind:
        raise MedidiffError(f"{latest}: a {record.get('kind')!r} run, not {kind!r}")
    tensors = ckpt.load_tensors(latest / f"{weights}.safetensors")
    if not (run_dir / "codec").is_dir():
        raise MedidiffError(f"{run_dir}: no codec/ folder beside the checkpoints (a partial run folder?)")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not _is_model_folder(out_dir):
        # the export replaces out_dir as a whole: never a folder that holds something else
        raise MedidiffError(f"-o {out_dir}: a non-empty folder that is not a medidiff model (no config.json with a "
                            "'kind'); choose a new folder")
    # Built beside out_dir and swapped in whole: a failed export leaves the previous model as it was.
    with staged_dir(out_dir) as stage:
        ckpt.save_tensors(stage / "model.safetensors", {k: v.float() for k, v in tensors.items()},
                          metadata={"weights": weights, "step": str(state["step"])})
        # The checkpoint by name only: a model folder is shared, and an absolute path would
        # publish the trainer's file system layout (user names, project folders).
        meta = {"kind": kind, "config": record["config"], "net": record["net"], "codec": record["codec"],
                "weights": weights, "step": state["step"], "config_hash": record.get("config_hash"),
                "source_checkpoint": latest.name, "text_encoder": record.get("text_encoder"),
                "label_convention": training_label_convention(record["config"]),
                "training_data": training_data_record(record["config"].get("data") or {})}
        write_text_atomic(stage / "config.json", json.dumps(meta, indent=2))
        shutil.copytree(run_dir / "codec", stage / "codec")
    return out_dir
