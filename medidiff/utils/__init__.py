"""Small helpers shared across medidiff (tensor broadcasting, per-sample random numbers)."""

from __future__ import annotations

from medidiff.utils.tensor import append_dims, mean_per_channel, randn_per_sample

__all__ = ["append_dims", "mean_per_channel", "randn_per_sample"]
