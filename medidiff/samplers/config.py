"""Configuration of sampling (the ``sampler:`` section of an experiment or generate command)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["RECORDED_WHEN_SET", "SamplerConfig", "TAKES_ETA"]

# The samplers whose steps may add fresh noise (``eta``): DDIM, and Euler on the flow path.
TAKES_ETA = ("ddim", "euler")

# Sampler options a generated case's provenance records only where they are not 0 (cases written before they were
# recorded still match a default request; a stored non-zero one differs from a request without it).
RECORDED_WHEN_SET = ("eta", "tail_steps")


@dataclass
class SamplerConfig:
    """How to draw samples; ``name`` must suit the objective (ddpm/ddim: DDPM, euler/heun: flow)."""

    name: Literal["ddpm", "ddim", "euler", "heun"] = "ddim"
    # Steps taken, whatever the sampler: ddpm/ddim/euler make num_steps network evaluations,
    # heun 2 * num_steps - 1 (its last step is Euler); CFG doubles the batch, not the count.
    # tail_steps (below) adds to num_steps in both counts.
    num_steps: int = 50
    # DDIM stochasticity (arXiv:2010.02502 eq. 16): 0 deterministic, 1 = DDPM posterior noise;
    # ddim, and euler on the flow path (its posterior; 0 = the ODE). On the shipped anatomy model
    # eta 1 barely sharpened and drew tumours in 1 of 8 cases, not 8 (results/sampler_cpu_20261202).
    eta: float = 0.0
    # Which training steps a DDPM grid uses (arXiv:2305.08891 table 2); flow grids ignore it.
    spacing: Literal["trailing", "linspace", "leading"] = "trailing"
    # Classifier-free guidance scale (arXiv:2207.12598): 1 = conditional model, 0 = unconditional.
    guidance_scale: float = 1.0
    # Clamp each x0 prediction to [-1, 1] (DDPM's "clip_denoised") in IMAGE space. The medidiff
    # pipelines (generate, previews, SR) do it as decode -> clamp -> encode through the codec
    # (generation.image_space_clamp), as WDM does. The bare samplers only see the model's own
    # space: ``samplers.sample(config=...)`` with clip_x0 clamps model-space values, which for a
    # latent model are normalised latent coefficients, not intensities; pass
    # ``x0_transform=image_space_clamp(codec)`` with clip_x0 false there instead.
    clip_x0: bool = False
    # Flow samplers (euler, heun): steps added between the grid's last non-zero time t_last and 0, each at a
    # quarter of the time before (t_last / 4, t_last / 16, ...), so the returned x0 estimate comes from a nearly
    # clean input instead of from t_last (shift(1 / num_steps): 0.05 on the anatomy 2 mm grid). That last
    # estimate's residual noise outside the head grew with training length (4 mm: RMS 0.0027 at 1200 steps, 0.0090
    # at 7200), and one tail step took it to 0.0040 (results/speckle_tail_cpu_20261205). Off by default: on the
    # shipped model it also raised contrast (t2w / t2f lesions too bright), likely because no training time lies
    # below t = 0.05. Each costs one call (heun: two). The path before t_last is unchanged.
    tail_steps: int = 0

    def __post_init__(self) -> None:
        if self.num_steps < 1:
            raise ValueError(f"num_steps must be >= 1, got {self.num_steps}")
        if not 0.0 <= self.eta <= 1.0:
            raise ValueError(f"eta must be in [0, 1], got {self.eta}")
        if self.eta != 0.0 and self.name not in TAKES_ETA:
            raise ValueError(
                f"eta is a ddim and euler option; sampler {self.name!r} does not use it (remove eta or use "
                "name: ddim or euler)"
            )
        if not 0 <= self.tail_steps <= 8:  # 4**-8 of t_last is ~1e-6 of the path: more steps add nothing
            raise ValueError(f"tail_steps must be in 0..8, got {self.tail_steps}")
        if self.tail_steps and self.name not in ("euler", "heun"):
            raise ValueError(f"tail_steps refines a flow grid's last step; sampler {self.name!r} samples an alpha_bar "
                             "grid (remove tail_steps or use name: euler or heun)")
        if self.spacing != "trailing" and self.name not in ("ddpm", "ddim"):
            raise ValueError(f"spacing chooses DDPM steps; sampler {self.name!r} uses a flow grid (remove spacing)")
