"""Configuration of conditioning by label maps (the ``conditioning:`` section)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ConditioningConfig:
    """How tumour label maps enter a diffusion model.

    * ``mask``: the WT/TC/ET region masks of a case condition the model by channel
      concatenation (Med-DDPM, arXiv:2305.18453); generation then needs masks.
    * ``generate_labels``: the region masks are generated with the image as extra channels, so
      every unconditional sample comes with its segmentation.
    Both need ``data.label_mode: regions``.
    """

    mask: bool = False
    generate_labels: bool = False

    def __post_init__(self) -> None:
        if self.mask and self.generate_labels:
            raise ValueError("mask conditioning and generate_labels exclude each other: a given mask is the label")
