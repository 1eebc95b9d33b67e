"""Samplers: pure functions ``sample_<name>(denoiser, x, ts, *, cond, guidance, callback, ...)``.

Every sampler sees one denoiser interface, ``denoiser(x_t, t, cond) -> x0_hat``, and an explicit
time grid ``ts`` of ``num_steps + 1`` values (plus ``tail_steps`` on a flow grid: :func:`sampling_grid`) in its
objective's sampler coordinate: alpha_bar
(increasing to 1) for ``ddpm``/``ddim``, flow time (decreasing to 0) for ``euler``/``heun``.
There is no hidden step index (k-diffusion/EDM style), so a sampler can start anywhere on the
grid (e.g. SDEdit) and the step count given is the step count used.

:func:`sample` is the convenience entry point: objective + net + per-sample seeds in, samples
out. Sample i depends only on ``seeds[i]`` (initial and per-step noise come from its own
generator), so it is the same whether generated alone or inside any batch (per-step noise is
drawn on the sampling device: see :func:`step_generators` for what that means across devices).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from medidiff.samplers.config import TAKES_ETA, SamplerConfig
from medidiff.samplers.ddpm import Callback, sample_ddim, sample_ddpm
from medidiff.samplers.flow import sample_euler, sample_heun, with_tail
from medidiff.samplers.guidance import Guidance, cfg_denoiser, drop_conditions, null_conditions, wrap_denoiser
from medidiff.utils.tensor import Cond, randn_per_sample

if TYPE_CHECKING:
    from medidiff.objectives import Objective

__all__ = [
    "SAMPLERS",
    "SAMPLER_OBJECTIVE",
    "TAKES_ETA",
    "SamplerConfig",
    "Guidance",
    "Callback",
    "sample",
    "sampling_grid",
    "check_sampler",
    "generators_from_seeds",
    "step_generators",
    "sample_ddpm",
    "sample_ddim",
    "sample_euler",
    "sample_heun",
    "cfg_denoiser",
    "drop_conditions",
    "null_conditions",
    "wrap_denoiser",
]

SAMPLERS: dict[str, Callable[..., Tensor]] = {
    "ddpm": sample_ddpm,
    "ddim": sample_ddim,
    "euler": sample_euler,
    "heun": sample_heun,
}

# Which objective kind each sampler integrates (its grid coordinate depends on it).
SAMPLER_OBJECTIVE: dict[str, str] = {"ddpm": "ddpm", "ddim": "ddpm", "euler": "flow", "heun": "flow"}


def check_sampler(name: str, objective_kind: str) -> None:
    """Raise a ValueError that names the right samplers when ``name`` does not suit the objective."""
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; choose one of {sorted(SAMPLERS)}")
    if SAMPLER_OBJECTIVE[name] != objective_kind:
        fits = sorted(n for n, k in SAMPLER_OBJECTIVE.items() if k == objective_kind)
        raise ValueError(
            f"sampler {name!r} integrates {SAMPLER_OBJECTIVE[name]!r} objectives, but objective.type is "
            f"{objective_kind!r}: use sampler.name one of {fits}"
        )


def generators_from_seeds(seeds: Sequence[int], device: torch.device | str = "cpu") -> list[torch.Generator]:
    """One generator per sample. CPU generators (the default) give the same noise on any machine."""
    return [torch.Generator(device=device).manual_seed(int(s)) for s in seeds]


def step_generators(generators: Sequence[torch.Generator], device: torch.device | str | None
                    ) -> list[torch.Generator]:
    """Per-sample generators for the noise a sampler adds at every step (DDPM, DDIM with eta > 0),
    on the sampling ``device``, each seeded from its sample's generator (after the starting noise).

    The starting noise stays on the CPU generators, identical on every machine; the per-step noise
    (one full latent per step: ~0.7 s of host RNG and copy per 240^3 case at 1000 steps, issue 15)
    is drawn where the sampler runs, straight into the batch (``randn_per_sample``). Sample i still
    depends only on its own seed, alone or in a batch, bit for bit on a given device. Across
    devices it does not: the CPU (Mersenne Twister) and CUDA (Philox) streams differ, and torch's
    CUDA kernels spread a large draw over a grid sized by the GPU's SM count, so two GPU models
    with different SM counts can draw different per-step noise from the same seed. Only a
    counter-based generator written in integer tensor ops would give the same bits everywhere
    (at several extra passes over the latent per step); we have not needed one.
    """
    dev = torch.device(device) if device is not None else torch.device("cpu")
    return [torch.Generator(device=dev).manual_seed(int(torch.randint(0, 2**62, (1,), generator=g, device=g.device).item()))
            for g in generators]


def sampling_grid(objective: Objective, config: SamplerConfig, spatial: Sequence[int]) -> Tensor:
    """The time grid ``config`` samples ``objective`` on for a latent of ``spatial`` shape: the objective's grid
    of ``config.num_steps`` (its resolution shift), then ``config.tail_steps`` refining its last step."""
    ts = objective.timesteps(config.num_steps, shape=spatial, spacing=config.spacing)
    return with_tail(ts, config.tail_steps) if config.tail_steps else ts


def sample(
    objective: Objective,
    net: nn.Module,
    shape: Sequence[int],
    *,
    config: SamplerConfig | None = None,
    seeds: Sequence[int] | None = None,
    generators: Sequence[torch.Generator] | None = None,
    cond: Cond | None = None,
    null_cond: Mapping[str, Any] | None = None,
    guidance_keys: Sequence[str] | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    callback: Callback | None = None,
    x0_transform: Callable[[Tensor], Tensor] | None = None,
) -> Tensor:
    """Draw ``shape[0]`` samples of ``shape`` (B, C, *spatial) from ``net`` trained with ``objective``.

    Give ``seeds`` (or ``generators``), one per sample, for reproducible per-sample results;
    without them the global RNG is used. ``null_cond``/``guidance_keys`` define the
    unconditional branch when ``config.guidance_scale != 1`` (see ``samplers.guidance``).
    The network is not put in eval mode here; that is the caller's choice.

    ``config.clip_x0`` clamps x0 to [-1, 1] in the space the net models, which is image space
    only for pixel-space models. For a latent model (wavelet or VAE codec) that clamps latent
    coefficients: give ``x0_transform=medidiff.generation.image_space_clamp(codec)`` and
    ``clip_x0=False`` to clamp intensities, as the pipelines do.
    """
    config = config or SamplerConfig(name="ddim" if objective.kind == "ddpm" else "euler")
    check_sampler(config.name, objective.kind)
    shape = tuple(int(s) for s in shape)
    if seeds is not None and generators is not None:
        raise ValueError("give seeds or generators, not both")
    if seeds is not None:
        generators = generators_from_seeds(seeds)
    if generators is not None and len(generators) != shape[0]:
        raise ValueError(f"got {len(generators)} seeds/generators for a batch of {shape[0]}: give one per sample")
    ts = sampling_grid(objective, config, shape[2:])
    x = randn_per_sample(shape, generators, device=device, dtype=dtype)
    if generators is not None:
        generators = step_generators(generators, x.device)
    guidance = Guidance(config.guidance_scale, null_cond, guidance_keys) if config.guidance_scale != 1.0 else None
    extra: dict[str, Any] = {"eta": config.eta} if config.name in TAKES_ETA else {}
    return SAMPLERS[config.name](
        objective.denoiser(net), x, ts, cond=cond, guidance=guidance, callback=callback,
        generators=generators, clip_x0=config.clip_x0, x0_transform=x0_transform, **extra,
    )
