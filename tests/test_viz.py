"""Previews people can read: panel size, exact overlay placement, legend, and valid PNG files."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from medidiff.data.brats import LABEL_CONVENTIONS, MODALITIES
from medidiff.viz import CLASS_COLOURS, preview_image, preview_layout, write_png

ALPHA = 0.45


def read_png(path: str | Path) -> np.ndarray:
    """A PNG reader independent of viz.write_png: checks the signature and every chunk's CRC,
    inflates the IDAT stream and undoes the five PNG row filters (8-bit grey or RGB only)."""
    data = Path(path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG signature"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        tag, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert zlib.crc32(tag + body) & 0xFFFFFFFF == crc, f"bad CRC in {tag!r}"
        if tag == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif tag == b"IDAT":
            idat += body
        elif tag == b"IEND":
            break
        pos += 12 + length
    assert header is not None, "no IHDR"
    w, h, depth, colour_type, _, _, interlace = header
    assert depth == 8 and colour_type in (0, 2) and interlace == 0
    c = 1 if colour_type == 0 else 3
    raw = zlib.decompress(idat)
    assert len(raw) == h * (1 + w * c)
    out = np.zeros((h, w * c), np.int32)
    prev = np.zeros(w * c, np.int32)
    for y in range(h):
        f = raw[y * (1 + w * c)]
        line = np.frombuffer(raw, np.uint8, w * c, y * (1 + w * c) + 1).astype(np.int32)
        if f == 0:  # None
            cur = line
        elif f == 2:  # Up
            cur = (line + prev) & 0xFF
        else:  # Sub, Average, Paeth: left to right
            assert f in (1, 3, 4), f"unknown filter {f}"
            cur = np.zeros(w * c, np.int32)
            for i in range(w * c):
                a = int(cur[i - c]) if i >= c else 0
                b, d = int(prev[i]), int(prev[i - c]) if i >= c else 0
                if f == 1:
                    pred = a
                elif f == 3:
                    pred = (a + b) // 2
                else:
                    p = a + b - d
                    pa, pb, pc = abs(p - a), abs(p - b), abs(p - d)
                    pred = a if pa <= pb and pa <= pc else b if pb <= pc else d
                cur[i] = (line[i] + pred) & 0xFF
        out[y], prev = cur, cur
    img = out.reshape(h, w, c).astype(np.uint8)
    return img[..., 0] if c == 1 else img


def _blob_label(shape: tuple[int, int, int], values: tuple[int, int, int]) -> np.ndarray:
    """Three separate boxes (one per value) away from the middle and from each other, so a
    flipped or transposed panel puts colour in the wrong place."""
    x, y, z = shape
    lab = np.zeros(shape, np.uint8)
    cx, cy, cz = x // 4, (2 * y) // 3, (3 * z) // 5  # the tumour's centre: off-centre on every axis
    rx, ry, rz = max(1, x // 16), max(1, y // 16), max(1, z // 16)
    lab[cx - 2 * rx:cx + 2 * rx + 1, cy - 2 * ry:cy + 2 * ry + 1, cz - 2 * rz:cz + 2 * rz + 1] = values[1]  # oedema
    lab[cx - rx:cx + rx + 1, cy - ry:cy + ry + 1, cz - rz:cz + rz + 1] = values[2]  # enhancing core
    lab[cx, cy, cz] = values[0]  # necrosis, one voxel
    return lab


def _expected_panel(label_slice: np.ndarray, colours: dict[int, tuple[int, int, int]], zoom: int) -> np.ndarray:
    """What a zero image with ``label_slice`` (display orientation) must look like, zoomed."""
    out = np.zeros((*label_slice.shape, 3), np.uint8)
    for v, col in colours.items():
        out[label_slice == v] = (ALPHA * np.array(col, np.float32)).astype(np.uint8)
    return np.kron(out, np.ones((zoom, zoom, 1), np.uint8))


@pytest.mark.parametrize("shape", [(240, 240, 155), (32, 32, 32), (20, 24, 28)])
@pytest.mark.parametrize("convention", ["brats2023", "brats2021"])
def test_panels_large_and_overlay_exactly_on_the_labels(shape, convention, tmp_path):
    names = LABEL_CONVENTIONS[convention]
    values = tuple(v for v in names if v)  # (1, 2, 3) or (1, 2, 4)
    colours = {v: CLASS_COLOURS[names[v]] for v in values}
    lab = _blob_label(shape, values)
    images = [np.zeros(shape, np.float32) for _ in MODALITIES]  # grey 0: a labelled pixel is alpha * colour
    img = preview_image(images, lab, modalities=MODALITIES, labels=names)
    lay = preview_layout(shape, len(MODALITIES), names=MODALITIES, legend_entries=len(values))
    assert img.shape == (lay.height, lay.width, 3)
    assert lay.cell >= 240 and lay.zoom * max(shape) >= 240  # every panel at least 240 px a side
    if shape == (240, 240, 155):
        assert lay.zoom == 1  # native resolution for BraTS
    if shape == (32, 32, 32):
        assert lay.zoom == 8

    # slices go through the tumour's largest cross-sections (the blobs' centre), displayed
    # upright: axial rows run Y from top (Y-1) to bottom, columns X; coronal/sagittal rows run Z
    # top-down and columns X / Y
    x, y, z = shape
    cx, cy, cz = x // 4, (2 * y) // 3, (3 * z) // 5
    slices = [lab[:, ::-1, cz].T, lab[:, cy, ::-1].T, lab[cx, :, ::-1].T]
    chromatic = (img[..., 0] != img[..., 1]) | (img[..., 1] != img[..., 2])
    total = 0
    for r in range(len(MODALITIES)):
        for p, sl in enumerate(slices):
            y0, x0 = lay.panel_origin(r, p)
            h, w = lay.slice_shape(p)
            assert (h, w) == (sl.shape[0] * lay.zoom, sl.shape[1] * lay.zoom)
            np.testing.assert_array_equal(img[y0:y0 + h, x0:x0 + w], _expected_panel(sl, colours, lay.zoom))
            total += int((sl > 0).sum()) * lay.zoom**2
    # colour nowhere else above the legend (no overlay spilled outside the panels)
    assert int(chromatic[:lay.legend_top].sum()) == total

    # the legend: every class's pure colour as a swatch, text in white, names of the modalities
    legend = img[lay.legend_top:]
    for v in values:
        assert (legend == colours[v]).all(axis=-1).sum() >= (5 * lay.scale) ** 2, names[v]
    assert (legend == 255).all(axis=-1).any()
    for r in range(len(MODALITIES)):
        y0, _ = lay.cell_origin(r, 0)
        margin = img[y0:y0 + lay.cell, :lay.left]
        assert (margin == 255).all(axis=-1).sum() > 0, f"no name drawn for row {r}"

    path = write_png(tmp_path / "p.png", img)
    np.testing.assert_array_equal(read_png(path), img)


def test_without_label_middle_slices_and_no_colour():
    shape = (16, 20, 24)
    rng = np.random.default_rng(0)
    vols = [rng.random(shape).astype(np.float32) for _ in range(2)]
    img = preview_image(vols, None, modalities=["t1n", "t2f"])
    lay = preview_layout(shape, 2, names=["t1n", "t2f"])
    assert img.shape == (lay.height, lay.width, 3) and lay.zoom == 10
    chromatic = (img[..., 0] != img[..., 1]) | (img[..., 1] != img[..., 2])
    assert not chromatic.any()
    # the axial panel of row 1 is the middle slice, nearest-neighbour zoomed (constant 10x10 blocks)
    y0, x0 = lay.panel_origin(1, 0)
    h, w = lay.slice_shape(0)
    panel = img[y0:y0 + h, x0:x0 + w, 0]
    blocks = panel.reshape(h // 10, 10, w // 10, 10)
    assert (blocks == blocks[:, :1, :, :1]).all()
    mid = vols[1][:, ::-1, shape[2] // 2].T
    # grey levels follow the slice's order (percentile scaling is monotonic)
    order = np.argsort(mid.ravel(), kind="stable")
    assert (np.diff(blocks[:, 0, :, 0].ravel()[order].astype(int)) >= 0).all()


def test_refuses_mismatched_shapes():
    with pytest.raises(ValueError, match="one \\(X, Y, Z\\) shape"):
        preview_image([np.zeros((8, 8, 8))], np.zeros((8, 8, 4), np.uint8))
    with pytest.raises(ValueError, match="modality names"):
        preview_image([np.zeros((8, 8, 8))], modalities=["a", "b"])


def test_png_reader_reads_filtered_rows():
    # the reader must not only understand viz's own filter-0 rows: a hand-made Sub/Up/Paeth file
    img = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3) * 7
    rows = []
    rows.append(b"\x01" + bytes((int(img[0].ravel()[i]) - (int(img[0].ravel()[i - 3]) if i >= 3 else 0)) & 0xFF
                                for i in range(9)))
    rows.append(b"\x02" + bytes((int(img[1].ravel()[i]) - int(img[0].ravel()[i])) & 0xFF for i in range(9)))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 3, 2, 8, 2, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(b"".join(rows))) + chunk(b"IEND", b""))
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "f.png").write_bytes(png)
        np.testing.assert_array_equal(read_png(Path(d) / "f.png"), img)


def test_a_voxel_has_one_grey_level_in_every_plane():
    # one grey window per modality: the voxels the axial and coronal slices share look the same
    shape = (12, 10, 14)
    x, y, z = np.meshgrid(*(np.arange(s) for s in shape), indexing="ij")
    vol = (x + 10.0 * z).astype(np.float32)  # the axial slice spans a narrow part of the range
    img = preview_image([vol], None, modalities=["t1n"])
    lay = preview_layout(shape, 1, names=["t1n"])
    k, cy, cz = lay.zoom, shape[1] // 2, shape[2] // 2
    ay, ax = lay.panel_origin(0, 0)
    cy0, cx0 = lay.panel_origin(0, 1)
    for xi in range(shape[0]):
        axial = img[ay + (shape[1] - 1 - cy) * k, ax + xi * k]  # voxel (xi, cy, cz)
        coronal = img[cy0 + (shape[2] - 1 - cz) * k, cx0 + xi * k]  # voxel (xi, cy, cz)
        np.testing.assert_array_equal(axial, coronal)
