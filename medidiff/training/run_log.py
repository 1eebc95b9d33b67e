"""Run logging: JSONL metrics and TensorBoard scalars (rank 0 only)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

__all__ = ["RunLog"]


class RunLog:
    """Appends one JSON object per logged step to ``RUN/metrics.jsonl`` and mirrors every
    numeric value to TensorBoard under ``RUN/tensorboard``.

    On resume, lines after the resumed step are dropped first, so the file reads as one
    uninterrupted run.
    """

    def __init__(self, run_dir: str | Path, *, enabled: bool = True, resume_step: int | None = None,
                 tensorboard: bool = True) -> None:
        self.enabled = enabled
        self.path = Path(run_dir) / "metrics.jsonl"
        self._tb = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
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
        if self._tb is not None:
            for key, value in values.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                    self._tb.add_scalar(key, value, step)
            self._tb.flush()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None
