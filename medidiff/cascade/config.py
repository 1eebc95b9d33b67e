"""Configuration of the super-resolution stage (the ``cascade:`` section, used by ``stage: sr``).

The SR stage learns p(high-res | low-res): a diffusion/flow denoiser on the wavelet latent of the
full-resolution volume, conditioned (channel concatenation) on the encoded, trilinearly upsampled
low-resolution volume (SR3 arXiv:2104.07636, CDM arXiv:2106.15282). It trains on random patches of
full-resolution volumes and samples whole volumes patch-wise without seams (see
:mod:`medidiff.cascade.patches`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["CascadeConfig"]


@dataclass
class CascadeConfig:
    # low-resolution grid = data.roi / scale (area average), i.e. the base model's grid
    scale: int = 2
    # training crop in image voxels (x, y, z); each size must divide by the codec factor times the
    # UNet's total downsampling (checked against the net when training starts)
    patch_size: tuple[int, int, int] = (64, 64, 64)
    # Gaussian conditioning augmentation (CDM arXiv:2106.15282 sec. 4.2, Imagen arXiv:2205.11487
    # sec. 2.5): per sample a level a ~ U(0, aug_max_level), the low-res volume gets + a * N(0, 1)
    # noise on its own grid, and a is given to the net (scalars input). 0 disables it.
    aug_max_level: float = 0.5
    # the level used at sampling (Imagen sweeps it; small values trust the base model more)
    sample_aug_level: float = 0.1
    # --- sampling (can be overridden per call) ---
    # 'whole' runs the net on the full latent grid (fastest when it fits in memory); 'patches'
    # assembles every x0 prediction from overlapping patches on the full grid (same noise
    # everywhere, so no seams) and bounds memory by the patch size
    sample_mode: Literal["whole", "patches"] = "patches"
    sample_patch_size: tuple[int, int, int] | None = None  # image voxels; null = patch_size
    sample_overlap: float = 0.25  # fraction of a patch shared with its neighbour (per axis)
    blend: Literal["cosine", "gaussian"] = "cosine"  # window that weights overlapping predictions
    patch_batch: int = 4  # patches per forward pass

    def __post_init__(self) -> None:
        if self.scale < 1:
            raise ValueError(f"scale must be >= 1, got {self.scale}")
        self.patch_size = tuple(int(p) for p in self.patch_size)  # type: ignore[assignment]
        if len(self.patch_size) != 3 or any(p < 1 for p in self.patch_size):
            raise ValueError(f"patch_size must be 3 positive sizes (x, y, z), got {list(self.patch_size)}")
        if self.sample_patch_size is not None:
            self.sample_patch_size = tuple(int(p) for p in self.sample_patch_size)  # type: ignore[assignment]
            if len(self.sample_patch_size) != 3 or any(p < 1 for p in self.sample_patch_size):
                raise ValueError(f"sample_patch_size must be 3 positive sizes or null, got {self.sample_patch_size}")
        if self.aug_max_level < 0 or self.sample_aug_level < 0:
            raise ValueError("aug_max_level and sample_aug_level are noise standard deviations: use values >= 0")
        if not 0.0 <= self.sample_overlap < 1.0:
            raise ValueError(f"sample_overlap is a fraction of the patch in [0, 1), got {self.sample_overlap}")
        if self.patch_batch < 1:
            raise ValueError(f"patch_batch must be >= 1, got {self.patch_batch}")

    @property
    def inference_patch(self) -> tuple[int, int, int]:
        return self.sample_patch_size or self.patch_size
