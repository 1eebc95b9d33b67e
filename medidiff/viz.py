"""PNG previews without an imaging dependency: tri-planar slices with a label overlay and a legend.

A PNG is a zlib stream of filtered rows plus three chunks; writing one takes a few lines, and text
is drawn with a built-in 3x5 pixel font, so previews need neither matplotlib nor Pillow.

Two mosaics:

* :func:`preview_image`, the one people read (``medidiff generate``'s ``preview.png``, training
  previews): every modality (rows) x axial, coronal, sagittal (columns) at native resolution,
  small volumes enlarged by a whole-number zoom (nearest neighbour: every voxel stays a sharp
  square, no interpolated detail) so every panel is at least ``min_panel`` (240) pixels a side;
  label overlay; modality names, plane names with slice indices, zoom and a colour legend drawn
  in. With a label the slices go through the tumour's largest cross-sections, not the middle.
  Each modality has one grey window (0.5-99.5 percentiles of its three slices), so a tissue
  looks the same in every plane.
* :func:`triplanar`, a compact mosaic at one pixel per voxel for figures that tile many cases
  (evaluation reports, benchmarks).
"""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medidiff.data.brats import LABELS

__all__ = ["write_png", "triplanar", "preview_image", "preview_layout", "PreviewLayout", "draw_text",
           "LABEL_COLOURS", "CLASS_COLOURS", "PLANES"]

# The BraTS colours (arXiv:2107.02314, fig. 1; ITK-SNAP's defaults for 1, 2, 4): necrotic /
# non-enhancing core red, oedema / FLAIR hyperintensity green, enhancing tumour yellow. Keyed by
# class name, so a 2021-convention map (ET = 4) gets the same colours as a 2023 one (ET = 3).
CLASS_COLOURS: dict[str, tuple[int, int, int]] = {
    "NCR/NETC": (230, 40, 40), "SNFH/ED": (40, 200, 60), "ET": (250, 220, 40),
}
# medidiff's internal label values (brats2023's) -> colour
LABEL_COLOURS: dict[int, tuple[int, int, int]] = {1: CLASS_COLOURS["NCR/NETC"], 2: CLASS_COLOURS["SNFH/ED"],
                                                 3: CLASS_COLOURS["ET"]}
# labels of another name (not BraTS) cycle through these
_OTHER_COLOURS = [(60, 120, 250), (250, 120, 30), (200, 60, 220), (40, 210, 210), (160, 100, 40)]
PLANES: tuple[str, ...] = ("axial", "coronal", "sagittal")

# 3x5 pixel glyphs, rows top to bottom, '1' = ink
_FONT: dict[str, str] = {
    "0": "111101101101111", "1": "010110010010111", "2": "111001111100111", "3": "111001111001111",
    "4": "101101111001001", "5": "111100111001111", "6": "111100111101111", "7": "111001001010010",
    "8": "111101111101111", "9": "111101111001111", "A": "010101111101101", "B": "110101110101110",
    "C": "011100100100011", "D": "110101101101110", "E": "111100110100111", "F": "111100110100100",
    "G": "011100101101011", "H": "101101111101101", "I": "111010010010111", "J": "001001001101010",
    "K": "101101110101101", "L": "100100100100111", "M": "101111111101101", "N": "110101101101101",
    "O": "010101101101010", "P": "110101110100100", "Q": "010101101110011", "R": "110101110101101",
    "S": "011100010001110", "T": "111010010010010", "U": "101101101101111", "V": "101101101101010",
    "W": "101101111111101", "X": "101101010101101", "Y": "101101010010010", "Z": "111001010100111",
    ".": "000000000000010", "+": "000010111010000", "-": "000000111000000", "/": "001001010100100",
    ":": "000010000010000", "(": "010100100100010", ")": "010001001001010", "_": "000000000000111",
    " ": "000000000000000", "=": "000111000111000", "%": "101001010100101", ",": "000000000010100",
}


def draw_text(canvas: np.ndarray, text: str, x: int, y: int, colour: Sequence[int] = (0, 0, 0), scale: int = 2) -> int:
    """Draw ``text`` (upper-cased; unknown characters as spaces) at top-left (x, y); returns the end x.

    A glyph is ``3 * scale`` wide and ``5 * scale`` tall, advancing ``4 * scale``; ink outside
    the canvas is clipped.
    """
    h, w = canvas.shape[:2]
    for ch in text.upper():
        glyph = _FONT.get(ch, _FONT[" "])
        for i, bit in enumerate(glyph):
            if bit == "1":
                r, c = divmod(i, 3)
                y0, x0 = y + r * scale, x + c * scale
                if 0 <= y0 and y0 + scale <= h and 0 <= x0 and x0 + scale <= w:
                    canvas[y0:y0 + scale, x0:x0 + scale] = colour
        x += 4 * scale
    return x


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


def _to_uint8(x: np.ndarray, window: np.ndarray | None = None) -> np.ndarray:
    """Grey levels: the 0.5-99.5 percentile range of ``window`` (default ``x`` itself) -> 0..255."""
    window = x if window is None else window
    lo, hi = np.percentile(window, [0.5, 99.5]) if window.size else (0.0, 1.0)
    return (np.clip((x - lo) / max(hi - lo, 1e-8), 0, 1) * 255).astype(np.uint8)


def _slices(vol: np.ndarray, centre: Sequence[int] | None = None) -> list[np.ndarray]:
    """Slices through ``centre`` (default: the middle) of an (X, Y, Z) volume, displayed
    radiologically-agnostic but upright: axial (Y up), coronal (Z up), sagittal (Z up)."""
    x, y, z = (s // 2 for s in vol.shape) if centre is None else (int(c) for c in centre)
    return [np.flipud(vol[:, :, z].T), np.flipud(vol[:, y, :].T), np.flipud(vol[x, :, :].T)]


def _overlay(grey: np.ndarray, label: np.ndarray | None, colours: Mapping[int, Sequence[int]],
             alpha: float) -> np.ndarray:
    """(H, W) uint8 grey + (H, W) label -> (H, W, 3) uint8, each label's colour blended in."""
    rgb = np.repeat(grey[..., None], 3, axis=2).astype(np.float32)
    if label is not None:
        for value, colour in colours.items():
            m = label == value
            rgb[m] = (1 - alpha) * rgb[m] + alpha * np.array(colour, np.float32)
    return rgb.astype(np.uint8)


def triplanar(
    images: Sequence[np.ndarray],
    label: np.ndarray | None = None,
    alpha: float = 0.45,
    centre: Sequence[int] | None = None,
) -> np.ndarray:
    """One compact RGB mosaic at one pixel per voxel: a row per image (axial, coronal, sagittal
    through ``centre``, default the middle voxel), label (medidiff's values) overlaid if given."""
    rows = []
    label_slices = _slices(label, centre) if label is not None else None
    for vol in images:
        panels = []
        for k, sl in enumerate(_slices(np.asarray(vol, dtype=np.float32), centre)):
            lab = label_slices[k] if label_slices is not None else None
            panels.append(_overlay(_to_uint8(sl), lab, LABEL_COLOURS, alpha))
        height = max(p.shape[0] for p in panels)
        panels = [np.pad(p, ((0, height - p.shape[0]), (0, 2), (0, 0))) for p in panels]
        rows.append(np.concatenate(panels, axis=1))
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 2), (0, width - r.shape[1]), (0, 0))) for r in rows]
    return np.concatenate(rows, axis=0)


# ---- the readable preview -----------------------------------------------------------------------


@dataclass(frozen=True)
class PreviewLayout:
    """Where :func:`preview_image` puts things, in pixels of its output.

    Every panel sits in a square cell of side ``cell`` (the volume's longest side times
    ``zoom``), its slice centred in the cell; ``panel_origin(row, plane)`` is the top-left pixel
    of the slice itself (``plane`` 0 axial, 1 coronal, 2 sagittal).
    """

    shape: tuple[int, int, int]  # (X, Y, Z) of the volumes
    rows: int
    zoom: int  # whole-number enlargement: each voxel is zoom x zoom pixels
    cell: int
    scale: int  # font pixel size
    left: int  # modality-name margin
    top: int  # plane-name band
    gap: int
    legend_top: int  # first pixel row of the legend band
    height: int
    width: int

    def slice_shape(self, plane: int) -> tuple[int, int]:
        """(rows, columns) of a plane's slice in pixels (after zoom)."""
        x, y, z = self.shape
        h, w = ((y, x), (z, x), (z, y))[plane]
        return h * self.zoom, w * self.zoom

    def cell_origin(self, row: int, plane: int) -> tuple[int, int]:
        return self.top + row * (self.cell + self.gap), self.left + plane * (self.cell + self.gap)

    def panel_origin(self, row: int, plane: int) -> tuple[int, int]:
        r0, c0 = self.cell_origin(row, plane)
        h, w = self.slice_shape(plane)
        return r0 + (self.cell - h) // 2, c0 + (self.cell - w) // 2


def _legend_rows(entries: int, scale: int) -> int:
    return 2 * scale + entries * 8 * scale


def preview_layout(shape: Sequence[int], rows: int, *, min_panel: int = 240, names: Sequence[str] = (),
                   legend_entries: int = 0) -> PreviewLayout:
    """The layout :func:`preview_image` uses for ``rows`` volumes of ``shape`` (X, Y, Z)."""
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"expected an (X, Y, Z) volume shape, got {tuple(shape)}")
    longest = max(int(s) for s in shape)
    zoom = max(1, math.ceil(min_panel / longest))
    cell = longest * zoom
    scale = max(2, round(cell / 80))  # text about 1/16 of a panel tall: legible at any zoom
    gap = 2 * scale
    left = gap + 4 * scale * max([len(n) for n in names] + [0]) + gap
    top = 9 * scale
    legend_top = top + rows * (cell + gap) + gap
    width = left + 3 * cell + 2 * gap + gap
    # the legend's first line (zoom) and the label entries, one line each
    height = legend_top + _legend_rows(1 + legend_entries, scale)
    return PreviewLayout(tuple(int(s) for s in shape), rows, zoom, cell, scale, left, top, gap, legend_top,
                         height, width)


def _colours_for(labels: Mapping[int, str]) -> dict[int, tuple[int, int, int]]:
    """Colour per label value: BraTS classes by name, anything else from a fixed cycle."""
    out, spare = {}, iter(_OTHER_COLOURS * 4)
    for value, name in labels.items():
        if value == 0:
            continue
        out[int(value)] = CLASS_COLOURS.get(str(name).upper(), None) or next(spare)
    return out


def _tumour_centre(label: np.ndarray) -> tuple[int, int, int] | None:
    """Per axis, the slice with the most labelled voxels (the largest tumour cross-section in each
    view; of equal ones, the one nearest the tumour's centre of mass); None for an empty label."""
    fg = label > 0
    if not fg.any():
        return None
    centre = []
    for ax in range(3):
        counts = fg.sum(axis=tuple(a for a in range(3) if a != ax))
        mass = float((counts * np.arange(len(counts))).sum() / counts.sum())
        best = np.flatnonzero(counts == counts.max())
        centre.append(int(best[np.argmin(np.abs(best - mass))]))
    return centre[0], centre[1], centre[2]


def preview_image(
    images: Sequence[np.ndarray],
    label: np.ndarray | None = None,
    *,
    modalities: Sequence[str] | None = None,
    labels: Mapping[int, str] | None = None,
    min_panel: int = 240,
    alpha: float = 0.45,
    centre: Sequence[int] | None = None,
) -> np.ndarray:
    """A preview people can read: (H, W, 3) uint8, a row per volume of ``images`` (all of one
    (X, Y, Z) shape), columns axial / coronal / sagittal, ``label`` overlaid on every row.

    ``labels`` maps the label map's values to class names (default medidiff's own:
    1 NCR/NETC, 2 SNFH/ED, 3 ET; give ``LABEL_CONVENTIONS['brats2021']`` for a map whose ET is 4),
    which set the colours (:data:`CLASS_COLOURS`) and the legend. ``centre`` (X, Y, Z) picks the
    slices; by default those through the tumour's largest cross-sections, or the middle without a
    tumour. Geometry: :func:`preview_layout`.
    """
    vols = [np.asarray(v, dtype=np.float32) for v in images]
    if not vols:
        raise ValueError("preview_image: no images")
    shape = vols[0].shape
    if any(v.shape != shape for v in vols) or (label is not None and np.shape(label) != shape):
        raise ValueError(f"preview_image: images and label must share one (X, Y, Z) shape, got "
                         f"{[v.shape for v in vols]}" + ("" if label is None else f" and {np.shape(label)}"))
    names = list(modalities) if modalities is not None else [f"#{i}" for i in range(len(vols))]
    if len(names) != len(vols):
        raise ValueError(f"preview_image: {len(vols)} images but {len(names)} modality names")
    legend = {k: v for k, v in (labels if labels is not None else LABELS).items() if k != 0}
    colours = _colours_for(legend)
    lab = None if label is None else np.asarray(label)
    if centre is None:
        centre = (_tumour_centre(lab) if lab is not None else None) or tuple(s // 2 for s in shape)
    lay = preview_layout(shape, len(vols), min_panel=min_panel, names=names,
                         legend_entries=len(legend) if lab is not None else 0)
    s, z = lay.scale, lay.zoom
    canvas = np.zeros((lay.height, lay.width, 3), np.uint8)
    white, dim = (255, 255, 255), (170, 170, 170)
    for p, (plane, index) in enumerate(zip(PLANES, (centre[2], centre[1], centre[0]))):
        axis = "ZYX"[p]
        _, c0 = lay.cell_origin(0, p)
        draw_text(canvas, f"{plane} {axis}={int(index)}", c0, 2 * s, white, s)
    label_slices = _slices(lab, centre) if lab is not None else [None] * 3
    for r, (vol, name) in enumerate(zip(vols, names)):
        r0, _ = lay.cell_origin(r, 0)
        draw_text(canvas, name, lay.gap, r0 + (lay.cell - 5 * s) // 2, white, s)
        planes = _slices(vol, centre)
        # one grey window per modality, over its three slices: a tissue looks the same in every plane
        window = np.concatenate([sl.ravel() for sl in planes])
        for p, sl in enumerate(planes):
            panel = _overlay(_to_uint8(sl, window), label_slices[p], colours, alpha)
            panel = np.repeat(np.repeat(panel, z, axis=0), z, axis=1)  # nearest-neighbour zoom
            y0, x0 = lay.panel_origin(r, p)
            canvas[y0:y0 + panel.shape[0], x0:x0 + panel.shape[1]] = panel
    y = lay.legend_top + s
    draw_text(canvas, f"{shape[0]}X{shape[1]}X{shape[2]} VOXELS, ZOOM {z}X (NEAREST)" if z > 1 else
              f"{shape[0]}X{shape[1]}X{shape[2]} VOXELS, NATIVE RESOLUTION", lay.gap, y, dim, s)
    if lab is not None:
        for value, cname in legend.items():
            y += 8 * s
            canvas[y:y + 5 * s, lay.gap:lay.gap + 5 * s] = colours[int(value)]
            draw_text(canvas, f"{value} {cname}", lay.gap + 7 * s, y, white, s)
    return canvas
