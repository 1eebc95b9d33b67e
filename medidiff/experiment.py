"""The experiment config: one YAML file per experiment, one section per family.

Sections live beside the code they configure; this module only composes them. Sizes are
overrides (``--set train.micro_batch=2``), not separate files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from medidiff.cascade.config import CascadeConfig
from medidiff.conditioning.config import ConditioningConfig
from medidiff.data.config import DataConfig
from medidiff.eval.config import EvalConfig
from medidiff.latents.config import LatentStageConfig, VAEConfig
from medidiff.nets.config import NetConfig
from medidiff.objectives.config import ObjectiveConfig
from medidiff.samplers.config import SamplerConfig
from medidiff.training.config import TrainConfig


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
        if text.enabled and self.sampler.guidance_scale != 1.0 and self.objective.cond_drop_prob == 0.0:
            raise ValueError("sampler.guidance_scale != 1 needs an unconditional model: set objective.cond_drop_prob "
                             "(0.1-0.2) so training sees the empty prompt")
