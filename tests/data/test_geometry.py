"""Grids: processed geometry, and mapping processed volumes back onto a reference grid."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from medidiff.data.brats import BRATS_AFFINE, BRATS_SHAPE
from medidiff.data.config import DataConfig
from medidiff.data.geometry import brats_geometry, processed_geometry, reference_geometry, to_reference_grid
from medidiff.data.transforms import Pipeline, deterministic_transforms
from medidiff.errors import DataError

from tests.data.test_transforms import _brain, _label, _modalities, write_case

SHAPE = (20, 18, 14)


def _lps_affine(shape, spacing=(1.0, 1.0, 1.0), origin=(30.0, -7.0, 4.0)) -> np.ndarray:
    """SRI24-style affine (reported as LPS) with a non-trivial origin and spacing."""
    a = np.diag([-spacing[0], -spacing[1], spacing[2], 1.0])
    a[:3, 3] = origin
    return a


def test_reference_and_brats_geometry(tmp_path):
    aff = _lps_affine(SHAPE, spacing=(1.0, 2.0, 3.0))
    path = tmp_path / "ref.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros(SHAPE, np.float32), aff), str(path))
    got_aff, got_shape = reference_geometry(path)
    np.testing.assert_allclose(got_aff, aff)
    assert got_shape == SHAPE
    b_aff, b_shape = brats_geometry()
    assert b_shape == BRATS_SHAPE == (240, 240, 155)
    np.testing.assert_array_equal(b_aff, BRATS_AFFINE)
    b_aff[0, 0] = 5.0  # a copy: callers cannot corrupt the constant
    assert BRATS_AFFINE[0, 0] == -1.0
    with pytest.raises(DataError, match="file not found"):
        reference_geometry(tmp_path / "missing.nii.gz")
    nib.save(nib.Nifti1Image(np.zeros((*SHAPE, 2), np.float32), aff), str(tmp_path / "four.nii.gz"))
    with pytest.raises(DataError, match="3D"):
        reference_geometry(tmp_path / "four.nii.gz")


def test_processed_geometry_matches_pipeline(tmp_path):
    item = write_case(tmp_path, "g", affine=_lps_affine(SHAPE))
    cfg = DataConfig(roi=(16, 16, 16), cache="none")
    out = Pipeline(deterministic_transforms(cfg))(dict(item))
    aff, shape = processed_geometry(item, cfg)
    assert shape == (16, 16, 16)
    np.testing.assert_allclose(aff, out["image"].affine.numpy())
    assert nib.aff2axcodes(aff) == ("R", "A", "S")


def test_identity_and_integer_shift():
    rng = np.random.default_rng(0)
    vol = rng.normal(size=(6, 7, 8)).astype(np.float32)
    aff = np.eye(4)
    np.testing.assert_allclose(to_reference_grid(vol, aff, aff, vol.shape), vol, atol=1e-6)
    # reference grid starts 2 voxels further along x: its voxel i is our voxel i + 2
    ref = aff.copy()
    ref[0, 3] = 2.0
    out = to_reference_grid(vol, aff, ref, vol.shape, background=-1.0)
    np.testing.assert_allclose(out[:4], vol[2:], atol=1e-6)
    np.testing.assert_array_equal(out[4:], -1.0)  # outside the source grid: background
    # channels are resampled independently; nearest keeps integer dtype and values exactly
    lab = rng.integers(0, 4, size=(2, 6, 7, 8)).astype(np.uint8)
    back = to_reference_grid(lab, aff, ref, vol.shape, mode="nearest")
    assert back.dtype == np.uint8 and back.shape == (2, 6, 7, 8)
    np.testing.assert_array_equal(back[:, :4], lab[:, 2:])
    with pytest.raises(ValueError, match="mode"):
        to_reference_grid(vol, aff, aff, vol.shape, mode="cubic")  # type: ignore[arg-type]


def test_pipeline_then_back_onto_original_grid(tmp_path):
    """RAS + crop + pad, then to_reference_grid: labels exact, images = scaled originals."""
    vols, lab = _modalities(3), _label()
    # Store the case in LPS voxel order, as SRI24-space BraTS files are.
    aff = _lps_affine(SHAPE)
    item = write_case(tmp_path, "inv", affine=aff, vols=[v[::-1, ::-1] for v in vols], label=lab[::-1, ::-1])
    orig_vols = [np.asarray(nib.load(p).dataobj, dtype=np.float64) for p in item["image"]]
    orig_lab = np.asarray(nib.load(item["label"]).dataobj)
    cfg = DataConfig(roi=(24, 16, 16), cache="none", crop_foreground=True)  # crop to the brain box, then pad with -1 / 0
    out = Pipeline(deterministic_transforms(cfg))(dict(item))
    ref_aff, ref_shape = reference_geometry(item["label"])

    back_lab = to_reference_grid(out["label"][0].numpy(), out["label"].affine.numpy(), ref_aff, ref_shape, "nearest")
    np.testing.assert_array_equal(back_lab, orig_lab)

    back = to_reference_grid(out["image"].numpy(), out["image"].affine.numpy(), ref_aff, ref_shape, background=-1.0)
    assert back.shape == (4, *SHAPE)
    brain = _brain()[::-1, ::-1]
    for c, v in enumerate(orig_vols):
        lo, hi = np.percentile(v[brain], cfg.percentiles)
        expected = np.clip((v - lo) / (hi - lo) * 2 - 1, -1, 1)
        np.testing.assert_allclose(back[c][brain], expected[brain], atol=1e-5)
        np.testing.assert_array_equal(back[c][~brain], -1.0)


def test_anisotropic_label_round_trip(tmp_path):
    """1x1x3 mm -> 1 mm -> back: the 1 mm grid holds the 3 mm centres, so nearest is exact."""
    shape = (20, 18, 6)
    aff = _lps_affine(shape, spacing=(1.0, 1.0, 3.0))
    lab = np.zeros(shape, np.uint8)
    lab[7:13, 6:12, 1:5] = 2
    lab[8:12, 7:11, 2:4] = 1
    lab[9:11, 8:10, 3] = 3
    vols = [np.where(_brain(shape), 100.0 * (k + 1) + np.arange(6)[None, None, :], 0).astype(np.float32) for k in range(4)]
    item = write_case(tmp_path, "an", affine=aff, vols=vols, label=lab)
    cfg = DataConfig(roi=(16, 16, 16), cache="none", crop_foreground=True)
    out = Pipeline(deterministic_transforms(cfg))(dict(item))
    np.testing.assert_allclose(np.abs(np.diag(out["label"].affine.numpy()))[:3], 1.0)
    back = to_reference_grid(out["label"][0].numpy(), out["label"].affine.numpy(), aff, shape, "nearest")
    np.testing.assert_array_equal(back, lab)
