"""What ``medidiff train`` can train, keyed by ``ExperimentConfig.stage``.

Each entry is ``train_<stage>(cfg, *, resume, progress) -> FitResult`` and ``export_<stage>(run_dir,
out_dir)``; all train through :func:`medidiff.training.loop.fit`. Imports are lazy so a CLI call
pays only for the stage it runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def _diffusion() -> tuple[Callable[..., Any], Callable[..., Any]]:
    from medidiff.generation import export_run
    from medidiff.training.diffusion import train_diffusion

    return train_diffusion, export_run


STAGES: dict[str, Callable[[], tuple[Callable[..., Any], Callable[..., Any]]]] = {
    "diffusion": _diffusion,
}
