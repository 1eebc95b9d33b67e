"""The experiment config: one YAML file per experiment, one section per family.

Sections live beside the code they configure; this module only composes them. Sizes are
overrides (``--set train.micro_batch=2``), not separate files.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from medidiff.data.config import DataConfig


@dataclass
class ExperimentConfig:
    name: str = "experiment"
    seed: int = 0
    output_dir: str = "runs"  # runs are written to <output_dir>/<name>
    data: DataConfig = field(default_factory=DataConfig)
