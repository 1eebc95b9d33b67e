"""The NIfTI writer: geometry round trips, synthetic stamps, provenance, clean headers."""

from __future__ import annotations

import gzip
import json
import os
import stat

import nibabel as nib
import numpy as np
import pytest

from medidiff import __version__
from medidiff.data.brats import BRATS_AFFINE
from medidiff.io import SYNTHETIC_DESCRIP, read_provenance, sidecar_path, write_nifti


def _affine(spacing=(1.0, 1.0, 1.0), flip=(1, 1, 1), origin=(3.0, -4.0, 5.0)) -> np.ndarray:
    a = np.diag([s * f for s, f in zip(spacing, flip)] + [1.0])
    a[:3, 3] = origin
    return a


@pytest.mark.parametrize(
    "affine",
    [_affine(), _affine((0.8, 1.2, 3.0)), _affine((1.0, 1.0, 2.5), flip=(-1, -1, 1)), BRATS_AFFINE],
    ids=["ras", "aniso", "lps-aniso", "brats"],
)
def test_round_trip_data_affine_spacing(tmp_path, affine):
    rng = np.random.default_rng(0)
    data = rng.normal(size=(6, 5, 4)).astype(np.float32)
    path = write_nifti(tmp_path / "a" / "vol.nii.gz", data, affine)
    img = nib.load(str(path))
    np.testing.assert_array_equal(np.asarray(img.dataobj), data)
    np.testing.assert_allclose(img.affine, affine, atol=1e-6)
    np.testing.assert_allclose(img.header.get_zooms(), np.abs(np.diag(affine))[:3], atol=1e-6)
    # qform and sform both carry the geometry (readers differ in which they prefer)
    np.testing.assert_allclose(img.get_qform(), affine, atol=1e-5)
    np.testing.assert_allclose(img.get_sform(), affine, atol=1e-6)
    assert int(img.header["qform_code"]) == 1 and int(img.header["sform_code"]) == 1
    assert nib.aff2axcodes(img.affine) == nib.aff2axcodes(affine)


def test_synthetic_stamp_and_provenance(tmp_path):
    prov = {"model": "wdm", "seed": 3, "config_hash": "abc123"}
    path = write_nifti(tmp_path / "s.nii.gz", np.ones((4, 4, 4), np.float32), np.eye(4), provenance=prov)
    hdr = nib.load(str(path)).header
    assert hdr["descrip"].tobytes().rstrip(b"\0").decode() == SYNTHETIC_DESCRIP[:79]
    assert "SYNTHETIC" in SYNTHETIC_DESCRIP
    assert hdr["intent_name"].tobytes().rstrip(b"\0") == b"synthetic"
    ext = read_provenance(path)
    assert ext["synthetic"] is True and ext["medidiff_version"] == __version__
    assert {k: ext[k] for k in prov} == prov
    side = sidecar_path(path)
    assert side == tmp_path / "s.json"
    sc = json.loads(side.read_text())
    assert sc["file"] == "s.nii.gz" and {k: sc[k] for k in prov} == prov and sc["synthetic"] is True
    # no temporary files left behind by the atomic write
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.json", "s.nii.gz"]


def test_not_synthetic_has_no_stamp(tmp_path):
    path = write_nifti(tmp_path / "p.nii", np.ones((3, 3, 3), np.float32), np.eye(4), synthetic=False, sidecar=False)
    hdr = nib.load(str(path)).header
    assert hdr["descrip"].tobytes().rstrip(b"\0") == b""
    assert hdr["intent_name"].tobytes().rstrip(b"\0") == b""
    assert read_provenance(path) == {}
    assert not sidecar_path(path).exists()


def test_no_header_fields_copied_from_a_patient_file(tmp_path):
    """Writing data read from a patient file carries its geometry only, nothing else."""
    src = nib.Nifti1Image(np.full((4, 4, 4), 7, np.int16), _affine((1, 1, 2)))
    src.header["descrip"] = b"Patient DOE^JOHN 1970-01-01"
    src.header["aux_file"] = b"study-42"
    src.header["db_name"] = b"hospital"
    src.header["intent_name"] = b"PATIENTX"
    src.header.extensions.append(nib.nifti1.Nifti1Extension(6, b"MRN 123456"))
    src.header["slice_duration"] = 0.5
    src.header["toffset"] = 12.0
    src_path = tmp_path / "patient.nii.gz"
    nib.save(src, str(src_path))
    loaded = nib.load(str(src_path))

    out = write_nifti(tmp_path / "syn.nii.gz", np.asarray(loaded.dataobj), loaded.affine, provenance={"seed": 1})
    hdr = nib.load(str(out)).header
    raw = out.read_bytes()

    blob = gzip.decompress(raw)  # header, extensions and voxels
    for secret in (b"DOE^JOHN", b"study-42", b"hospital", b"MRN 123456", b"PATIENTX"):
        assert secret not in blob
    assert float(hdr["slice_duration"]) == 0.0 and float(hdr["toffset"]) == 0.0
    fresh = nib.Nifti1Header()
    for field in ("aux_file", "db_name", "slice_start", "slice_end", "slice_code", "dim_info"):
        assert hdr[field].tobytes() == fresh[field].tobytes(), field
    np.testing.assert_allclose(hdr.get_zooms(), (1, 1, 2))


@pytest.mark.parametrize(
    "data, dtype",
    [
        pytest.param(np.zeros((3, 3, 3), np.float64), np.float32, id="float"),
        pytest.param(np.array([[[0, 1], [2, 3]]] * 2, np.int64), np.uint8, id="labels"),
        pytest.param(np.array([[[-1, 1], [2, 300]]] * 2, np.int64), np.int16, id="signed"),
        pytest.param(np.ones((2, 2, 2), bool), np.uint8, id="bool"),
    ],
)
def test_default_dtypes(tmp_path, data, dtype):
    path = write_nifti(tmp_path / "d.nii.gz", data, np.eye(4), sidecar=False)
    img = nib.load(str(path))
    assert img.get_data_dtype() == dtype
    np.testing.assert_array_equal(np.asarray(img.dataobj), data.astype(dtype))


def test_big_endian_input_round_trips(tmp_path):
    data = np.arange(24, dtype=">f4").reshape(2, 3, 4)
    path = write_nifti(tmp_path / "be.nii.gz", data, np.eye(4), sidecar=False)
    np.testing.assert_array_equal(np.asarray(nib.load(str(path)).dataobj), data.astype(np.float32))


def test_refuses_nan_inf_non3d_and_bad_affine(tmp_path):
    bad = np.zeros((3, 3, 3), np.float32)
    bad[1, 1, 1] = np.nan
    with pytest.raises(ValueError, match="NaN") as exc:
        write_nifti(tmp_path / "nan.nii.gz", bad, np.eye(4))
    assert "nan.nii.gz" in str(exc.value)
    bad[1, 1, 1] = np.inf
    with pytest.raises(ValueError, match="NaN/Inf"):
        write_nifti(tmp_path / "inf.nii.gz", bad, np.eye(4))
    with pytest.raises(ValueError, match="3D") as exc:
        write_nifti(tmp_path / "four.nii.gz", np.zeros((3, 3, 3, 2), np.float32), np.eye(4))
    assert "four.nii.gz" in str(exc.value)
    with pytest.raises(ValueError, match="3D"):
        write_nifti(tmp_path / "two.nii.gz", np.zeros((3, 3), np.float32), np.eye(4))
    with pytest.raises(ValueError, match="singular"):
        write_nifti(tmp_path / "sing.nii.gz", np.zeros((3, 3, 3), np.float32), np.diag([1.0, 0.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="4x4"):
        write_nifti(tmp_path / "aff.nii.gz", np.zeros((3, 3, 3), np.float32), np.eye(3))
    # nothing was written by the refused calls
    assert list(tmp_path.iterdir()) == []


def test_refuses_nan_even_with_integer_dtype(tmp_path):
    bad = np.zeros((3, 3, 3), np.float32)
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        write_nifti(tmp_path / "nan.nii.gz", bad, np.eye(4), dtype=np.uint8)


def test_refuses_integer_overflow(tmp_path):
    with pytest.raises(ValueError, match="do not fit"):
        write_nifti(tmp_path / "big.nii.gz", np.full((2, 2, 2), 40000, np.int64), np.eye(4), dtype=np.int16)


def _write_many(args) -> int:
    """Worker: write one volume (and its sidecar) to the same path many times; count failures."""
    path, n = args
    failures = 0
    for _ in range(n):
        try:
            write_nifti(path, np.zeros((2, 2, 2), np.float32), np.eye(4), provenance={"k": 1})
        except OSError:
            failures += 1
    return failures


def test_concurrent_writers_of_one_file_never_collide(tmp_path):
    """Temporary names are unique per write: a fixed '<sidecar>.tmp' made concurrent writers
    rename each other's files away (FileNotFoundError)."""
    import multiprocessing as mp

    path = tmp_path / "case" / "t1n.nii.gz"
    # spawn, not fork: earlier tests leave threads (tqdm's monitor, torch's pools) that a forked
    # child can deadlock on, and pool.map waits for ever on a hung or dead worker (stop 54's CI sat
    # here until its 90 minutes ran out). get(timeout) bounds the wait and Pool's exit terminates the
    # workers (an executor's exit would wait for a hung one).
    with mp.get_context("spawn").Pool(3) as pool:
        failures = pool.map_async(_write_many, [(path, 60)] * 3).get(timeout=300)
    assert failures == [0, 0, 0]
    assert json.loads(sidecar_path(path).read_text())["k"] == 1
    assert not list(path.parent.glob(".tmp_*")) and not list(path.parent.glob("*.tmp"))


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
def test_written_files_follow_the_umask(tmp_path, umask, mode):
    from medidiff.data.manifest import write_manifest

    old = os.umask(umask)
    try:
        vol = write_nifti(tmp_path / "v.nii.gz", np.zeros((2, 2, 2), np.float32), np.eye(4))
        manifest = write_manifest({"training": []}, tmp_path / "m.json")
    finally:
        os.umask(old)
    for p in (vol, sidecar_path(vol), manifest):
        assert stat.S_IMODE(p.stat().st_mode) == mode, p


def test_an_interrupted_write_leaves_no_temporary_file_and_the_old_file(tmp_path):
    from medidiff.files import atomic_path

    target = tmp_path / "f.txt"
    target.write_text("old")
    with pytest.raises(KeyboardInterrupt), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise KeyboardInterrupt
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["f.txt"]
