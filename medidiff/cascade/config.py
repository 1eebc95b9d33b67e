"""Configuration of the super-resolution stage (the ``cascade:`` section, stage ``sr``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class CascadeConfig:
    """(Filled in by the cascade work; fields here are the agreed minimum.)"""

    scale: int = 2  # low-resolution grid = data.roi / scale

    def __post_init__(self) -> None:
        if self.scale < 1:
            raise ValueError(f"scale must be >= 1, got {self.scale}")
