"""Run logging (rank 0 only): JSONL metrics, TensorBoard scalars, and the experiment trackers
(MLflow, W&B) the ``log:`` section configures (:mod:`medidiff.training.tracking`)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from medidiff.training.config import LogConfig
from medidiff.training.tracking import RunStatus, Tracker, open_trackers, scalars

__all__ = ["RunLog"]


class RunLog:
    """Appends one JSON object per logged step to ``RUN/metrics.jsonl`` and mirrors every
    numeric value to TensorBoard under ``RUN/tensorboard`` and to the configured trackers.

    On resume, lines after the resumed step are dropped first, so the file reads as one
    uninterrupted run; trackers reopen the run they logged to (their ids are in the run folder).
    ``params`` (the flattened resolved config) become the trackers' parameters.
    """

    def __init__(self, run_dir: str | Path, *, enabled: bool = True, resume_step: int | None = None,
                 tensorboard: bool = True, tracking: LogConfig | None = None,
                 params: Mapping[str, Any] | None = None) -> None:
        self.enabled = enabled
        self.path = Path(run_dir) / "metrics.jsonl"
        self._tb = None
        self._trackers: list[Tracker] = []
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # first: a tracker that cannot start stops the run before any file is cut or opened
        self._trackers = open_trackers(tracking, Path(run_dir), params=params or {}, resume_step=resume_step,
                                       default_name=Path(run_dir).name)
        resolved = Path(run_dir) / "resolved_config.yaml"
        if resolved.is_file():
            self.artifact(resolved, "")
        if resume_step is not None and self.path.exists():
            kept = [ln for ln in self.path.read_text().splitlines() if ln.strip() and json.loads(ln).get("step", 0) <= resume_step]
            self.path.write_text("".join(ln + "\n" for ln in kept))
        elif resume_step is None and self.path.exists():
            self.path.unlink()
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(Path(run_dir) / "tensorboard"), purge_step=resume_step)
            except ImportError:  # tensorboard is a dependency; tolerate minimal installs
                self._tb = None

    def log(self, step: int, values: dict[str, Any]) -> None:
        if not self.enabled:
            return
        record = {"step": int(step), **values}
        with open(self.path, "a") as fh:
            fh.write(json.dumps(record, default=float) + "\n")
        numbers = scalars(values)
        if self._tb is not None:
            for key, value in numbers.items():
                self._tb.add_scalar(key, value, step)
            self._tb.flush()
        for t in self._trackers:
            t.log_metrics(int(step), numbers)

    def artifact(self, path: str | Path, folder: str = "previews") -> None:
        """Hand a written file (a preview PNG) to the trackers, under ``folder``."""
        if self.enabled:
            for t in self._trackers:
                t.log_artifact(Path(path), folder)

    def close(self, status: RunStatus = "FINISHED") -> None:
        """``status``: FINISHED, FAILED (an error ended the run) or KILLED (stopped early, resumable)."""
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        trackers, self._trackers = self._trackers, []
        for t in trackers:
            t.close(status)
