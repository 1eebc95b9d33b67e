"""PNG previews without an imaging dependency: tri-planar mid-slices with a label overlay.

A PNG is a zlib stream of filtered rows plus three chunks; writing one takes a few lines, so
previews need neither matplotlib nor Pillow.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["write_png", "triplanar", "LABEL_COLOURS"]

# NCR/NETC red, SNFH/ED green, ET yellow (the usual BraTS viewer colours)
LABEL_COLOURS = {1: (230, 40, 40), 2: (40, 200, 60), 3: (250, 220, 40)}


def write_png(path: str | Path, image: np.ndarray) -> Path:
    """Write (H, W) grey or (H, W, 3) RGB uint8 as PNG."""
    arr = np.ascontiguousarray(image, dtype=np.uint8)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3):
        raise ValueError(f"{path}: expected (H, W) or (H, W, 3), got {arr.shape}")
    h, w, c = arr.shape
    raw = b"".join(b"\x00" + arr[y].tobytes() for y in range(h))  # filter 0 per row

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    colour_type = 0 if c == 1 else 2
    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, colour_type, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png)
    return path


def _to_uint8(x: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(x, [0.5, 99.5]) if x.size else (0.0, 1.0)
    return (np.clip((x - lo) / max(hi - lo, 1e-8), 0, 1) * 255).astype(np.uint8)


def _slices(vol: np.ndarray, centre: Sequence[int] | None = None) -> list[np.ndarray]:
    """Slices through ``centre`` (default: the middle) of an (X, Y, Z) volume, displayed
    radiologically-agnostic but upright: axial (Y up), coronal (Z up), sagittal (Z up)."""
    x, y, z = (s // 2 for s in vol.shape) if centre is None else (int(c) for c in centre)
    return [np.flipud(vol[:, :, z].T), np.flipud(vol[:, y, :].T), np.flipud(vol[x, :, :].T)]


def triplanar(
    images: Sequence[np.ndarray],
    label: np.ndarray | None = None,
    alpha: float = 0.45,
    centre: Sequence[int] | None = None,
) -> np.ndarray:
    """One RGB mosaic: a row per image (axial, coronal, sagittal through ``centre``, default the
    middle voxel), label overlaid if given."""
    rows = []
    label_slices = _slices(label, centre) if label is not None else None
    for vol in images:
        panels = []
        for k, sl in enumerate(_slices(np.asarray(vol, dtype=np.float32), centre)):
            grey = _to_uint8(sl)
            rgb = np.repeat(grey[..., None], 3, axis=2).astype(np.float32)
            if label_slices is not None:
                lab = label_slices[k]
                for value, colour in LABEL_COLOURS.items():
                    m = lab == value
                    rgb[m] = (1 - alpha) * rgb[m] + alpha * np.array(colour, np.float32)
            panels.append(rgb.astype(np.uint8))
        height = max(p.shape[0] for p in panels)
        panels = [np.pad(p, ((0, height - p.shape[0]), (0, 2), (0, 0))) for p in panels]
        rows.append(np.concatenate(panels, axis=1))
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 2), (0, width - r.shape[1]), (0, 0))) for r in rows]
    return np.concatenate(rows, axis=0)
