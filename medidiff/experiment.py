"""The experiment config: one YAML file per experiment, one section per family.

Sections live beside the code they configure; this module only composes them and checks what
crosses sections. Sizes are overrides (``--set train.micro_batch=2``), not separate files.

Checks across sections run when the config is built (``load_config``, a model folder's
``config.json``, ``dataclasses.replace``), so ``train``, ``generate`` and ``--dry-run`` all meet
them before any data or rank is touched. The sampler ones live in
:meth:`ExperimentConfig.check_sampler`, which the pipelines call again for a sampler given at
generation time (``medidiff generate --sampler/--steps/--guidance``):

* the sampler integrates this objective's path (a flow model under ``ddpm`` used to pass the
  load and raise in the first training preview, on rank 0 only, stalling the other ranks);
* an epsilon-predicting DDPM model refuses grids whose first step amplifies its error more than
  ``EPS_GAIN_LIMIT`` (the cosine schedule on the default ``trailing`` grid: x630). We refuse
  rather than correct: starting the cosine grid later re-introduces the start-point mismatch
  that the trailing grid exists to remove (arXiv:2305.08891 sec. 3.3), and making v the
  default for cosine would silently reinterpret the outputs of models trained as epsilon. The
  message names both fixes (``objective.prediction: v`` to train; ``sampler.spacing: leading``
  for a trained model when that grid is sane);
* classifier-free guidance needs a conditional model whose unconditional branch was trained:
  some conditioning, ``objective.cond_drop_prob > 0``, and ``objective.cond_drop_keys`` that
  name at least one of the conditions (mask, SR low-res volume, text).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from medidiff.cascade.config import CascadeConfig
from medidiff.conditioning.config import ConditioningConfig
from medidiff.config import ConfigError
from medidiff.data.config import DataConfig
from medidiff.eval.config import EvalConfig
from medidiff.latents.config import LatentStageConfig, VAEConfig
from medidiff.nets.config import NetConfig
from medidiff.objectives.config import SPATIAL_WEIGHTS, ObjectiveConfig
from medidiff.samplers.config import SamplerConfig
from medidiff.training.config import LogConfig, TrainConfig


@dataclass
class ExperimentConfig:
    name: str = "experiment"
    # what `medidiff train` trains: the diffusion model, the VAE codec, or the cascade SR stage
    stage: Literal["diffusion", "vae", "sr"] = "diffusion"
    seed: int = 0
    output_dir: str = "runs"  # runs are written to <output_dir>/<name>
    data: DataConfig = field(default_factory=DataConfig)
    latent: LatentStageConfig = field(default_factory=LatentStageConfig)
    conditioning: ConditioningConfig = field(default_factory=ConditioningConfig)
    # in/out/cond channels are derived from the data, codec and conditioning (and logged)
    net: NetConfig = field(default_factory=NetConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)  # previews and default generation
    train: TrainConfig = field(default_factory=TrainConfig)
    vae: VAEConfig = field(default_factory=VAEConfig)  # stage vae
    cascade: CascadeConfig = field(default_factory=CascadeConfig)  # stage sr
    eval: EvalConfig = field(default_factory=EvalConfig)  # medidiff evaluate
    log: LogConfig = field(default_factory=LogConfig)  # MLflow / W&B beside metrics.jsonl and TensorBoard

    def __post_init__(self) -> None:
        uses_labels = self.conditioning.mask or self.conditioning.generate_labels
        if uses_labels and self.data.label_mode != "regions":
            raise ValueError(
                f"conditioning.mask/generate_labels need data.label_mode: regions (got {self.data.label_mode!r})"
            )
        text = self.conditioning.text
        if text.enabled and self.data.flip_prob > 0 and "location" in text.facts:
            raise ValueError("data.flip_prob > 0 mirrors left and right but the prompts state the tumour's "
                             "hemisphere: set data.flip_prob: 0 or drop 'location' from conditioning.text.facts")
        for key in SPATIAL_WEIGHTS:
            weight = getattr(self.objective, key)
            if weight != 1.0 and (self.stage != "diffusion" or self.latent.cache):
                # refused here, before a run folder is claimed: only the diffusion stage fed with images finds the
                # background (a latent cache holds no images; the SR and VAE stages do not weigh by it)
                raise ValueError(f"objective.{key} ({weight}) weighs the loss by positions found from the images or "
                                 "labels: the diffusion stage trained on images only (this is stage "
                                 f"{self.stage!r}{' with latent.cache' if self.latent.cache else ''}); "
                                 f"set objective.{key}: 1")
        if self.objective.tumour_weight != 1.0 and self.objective.tumour_map == "input" and (
                not self.conditioning.generate_labels or self.latent.type != "wavelet"):
            # refused before a run folder is claimed: the map is read off the generated WT mask's coarse band
            raise ValueError("objective.tumour_map: input reads the generated WT mask's coarse band in the net's "
                             "input: it needs conditioning.generate_labels and latent.type wavelet "
                             "(or set objective.tumour_map: label)")
        if (self.objective.tumour_weight != 1.0 and self.objective.tumour_weight_channels == "images"
                and self.latent.type != "wavelet"):
            raise ValueError("objective.tumour_weight_channels: images tells the images' latent channels by their "
                             "names: it needs latent.type wavelet (or set objective.tumour_weight_channels: all)")
        if self.conditioning.generate_brain and self.stage != "diffusion":
            # the SR stage upsamples the base's output, already cut to its brain; a VAE generates nothing
            raise ValueError(f"conditioning.generate_brain is for the diffusion stage (the base model), not stage "
                             f"{self.stage!r}: the cascade's SR stage takes the base's cases already cut to the brain")
        if self.stage != "vae":  # the VAE stage samples nothing: its sampler section is unused
            self.check_sampler(self.sampler)
        self.check_image_channel_keys()

    def check_image_channel_keys(self) -> None:
        """``objective.detail_weights`` and ``x0_skip_sigmas`` name image channels (t1n, WT, brain): a name this
        model lacks is refused here, before a run folder is claimed and the data loaded and fitted
        (``build_objective`` refuses it too, but only then). The wavelet base model's channels are known from the
        config; other stages' and latents' are checked by ``build_objective``."""
        given = {key: values for key in ("detail_weights", "x0_skip_sigmas")
                 if (values := getattr(self.objective, key))}
        if not given or self.stage != "diffusion" or self.latent.type != "wavelet":
            return
        from medidiff.training.diffusion import channel_names  # lazily: it loads the training stack

        have = channel_names(self)
        for key, values in given.items():
            unknown = sorted(set(values) - set(have))
            if unknown:
                raise ConfigError(f"objective.{key} names {unknown}, which this model does not have: its image "
                                  f"channels are {have}")

    def condition_keys(self) -> tuple[str, ...]:
        """The net inputs this experiment conditions on: what CFG dropout can null."""
        keys: list[str] = []
        if self.stage == "sr":
            keys += ["cond_image", "scalars"]  # encoded low-res volume (+ masks), augmentation level
        elif self.conditioning.mask:
            keys.append("cond_image")
        if self.conditioning.text.enabled:
            keys += ["context", "context_mask"]
        return tuple(keys)

    def check_sampler(self, sampler: SamplerConfig, key: str = "sampler") -> None:
        """Raise :class:`ConfigError` naming the keys when ``sampler`` cannot sample this
        experiment's model correctly (see the module docstring)."""
        from medidiff.objectives.ddpm import EPS_GAIN_LIMIT, DDPMObjective, eps_error_gain
        from medidiff.samplers import check_sampler

        obj = self.objective
        try:
            check_sampler(sampler.name, obj.type)
        except ValueError as exc:
            raise ConfigError(f"{key}.name: {exc}") from None
        if obj.type == "ddpm":
            ddpm = DDPMObjective(obj)
            try:
                grid = ddpm.timesteps(sampler.num_steps, spacing=sampler.spacing)
            except ValueError as exc:
                raise ConfigError(f"{key}.num_steps/{key}.spacing: {exc}") from None
            gain = eps_error_gain(grid)
            if obj.prediction == "epsilon" and gain > EPS_GAIN_LIMIT:
                fixes = "train with objective.prediction: v"
                if sampler.spacing != "leading":
                    lead = ddpm.timesteps(sampler.num_steps, spacing="leading")
                    # offer it only where it still starts from (nearly) pure noise
                    if eps_error_gain(lead) <= EPS_GAIN_LIMIT and float(lead[0]) < 0.01:
                        fixes += (f"; a trained model can sample with {key}.spacing: leading "
                                  f"(gain {eps_error_gain(lead):.1f})")
                raise ConfigError(
                    f"objective.prediction 'epsilon' with objective.schedule '{obj.schedule}' and {key}.name "
                    f"'{sampler.name}' ({key}.spacing '{sampler.spacing}', {key}.num_steps {sampler.num_steps}): the "
                    f"first step starts at alpha_bar {float(grid[0]):.2g} and multiplies the network's error by "
                    f"{gain:.0f} (limit {EPS_GAIN_LIMIT:g}), so samples come out wrong: {fixes}"
                )
        if sampler.guidance_scale != 1.0:
            have = self.condition_keys()
            g = f"{key}.guidance_scale {sampler.guidance_scale:g}"
            if not have:
                raise ConfigError(f"{g} guides towards a condition, but this experiment has none (no "
                                  f"conditioning.mask, conditioning.text or stage: sr): set {key}.guidance_scale: 1")
            if obj.cond_drop_prob == 0.0:
                raise ConfigError(f"{g} needs an unconditional model, but objective.cond_drop_prob is 0 so training "
                                  f"never saw null conditions: set objective.cond_drop_prob (0.1-0.2) and retrain, or "
                                  f"{key}.guidance_scale: 1")
            dropped = have if obj.cond_drop_keys is None else [k for k in obj.cond_drop_keys if k in have]
            if not dropped:
                raise ConfigError(f"{g}: objective.cond_drop_keys {obj.cond_drop_keys} names none of this model's "
                                  f"conditions {list(have)}, so no unconditional branch was trained: list one of them")
