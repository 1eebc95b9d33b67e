"""What ``medidiff train`` can train, keyed by ``ExperimentConfig.stage``.

Each entry is ``train_<stage>(cfg, *, resume, progress) -> FitResult`` and ``export_<stage>(run_dir,
out_dir)``; all train through :func:`medidiff.training.loop.fit`. Imports are lazy so a CLI call
pays only for the stage it runs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any


def _diffusion() -> tuple[Callable[..., Any], Callable[..., Any]]:
    from medidiff.generation import export_run
    from medidiff.training.diffusion import train_diffusion

    return train_diffusion, export_run


def _sr() -> tuple[Callable[..., Any], Callable[..., Any]]:
    from medidiff.cascade.sr_task import export_sr, train_sr

    return train_sr, export_sr


def _vae() -> tuple[Callable[..., Any], Callable[..., Any]]:
    from medidiff.latents.vae_task import export_vae, train_vae

    return train_vae, export_vae


STAGES: dict[str, Callable[[], tuple[Callable[..., Any], Callable[..., Any]]]] = {
    "diffusion": _diffusion,
    "sr": _sr,
    "vae": _vae,
}


def export_stage_run(run_dir: str | Path, out_dir: str | Path, **kwargs: Any) -> Path:
    """Export a run of any stage: the stage is read from its newest complete checkpoint."""
    from medidiff.errors import MedidiffError
    from medidiff.training import checkpoint as ckpt

    latest = ckpt.latest_complete(ckpt.checkpoint_root(run_dir))
    if latest is None:
        raise MedidiffError(f"{run_dir}: no complete checkpoint under {ckpt.checkpoint_root(run_dir)}")
    stage = ((ckpt.read_state(latest).get("record") or {}).get("config") or {}).get("stage", "diffusion")
    if stage not in STAGES:
        raise MedidiffError(f"{latest}: stage {stage!r} has no exporter (known: {sorted(STAGES)})")
    return STAGES[stage]()[1](run_dir, out_dir, **kwargs)
