"""One set of file checks: every planted bad file is an error in `manifest validate` AND one line
naming the file (DataError, exit 2) in the data pipeline, `latents encode` and reference grids."""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medidiff.cli.main import main
from medidiff.config import load_config
from medidiff.data.checks import DEFAULT_MAX_VOXELS, label_problem
from medidiff.data.config import DataConfig
from medidiff.data.geometry import reference_geometry
from medidiff.data.manifest import build_brats_manifest, load_manifest, write_manifest
from medidiff.data.transforms import build_transforms
from medidiff.data.validate import validate_manifest
from medidiff.errors import DataError
from tests.data.mock_brats import brats2023_case_id, make_brats2023, mock_volume, save_nifti

SHAPE = (12, 12, 8)


def _file(root: Path, suffix: str) -> Path:
    cid = brats2023_case_id(0)
    return root / cid / f"{cid}-{suffix}.nii.gz"


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _huge_header(path: Path) -> None:
    """A header declaring 30000^3 uint8 voxels over a few real bytes (as a gzip bomb would)."""
    hdr = nib.Nifti1Header()
    hdr.set_data_shape((30000, 30000, 30000))
    hdr.set_data_dtype(np.uint8)
    hdr.set_sform(np.eye(4), code=1)
    hdr["vox_offset"] = 352
    path.write_bytes(gzip.compress(hdr.binaryblock + b"\0" * 4 + b"\0" * 64))


def _singular(path: Path) -> None:
    hdr = nib.Nifti1Header()  # nibabel refuses to build an image from a singular affine: patch the header
    hdr.set_data_shape(SHAPE)
    hdr.set_data_dtype(np.int16)
    hdr["sform_code"], hdr["qform_code"] = 1, 0
    hdr["srow_x"], hdr["srow_y"], hdr["srow_z"] = [1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0]  # collapsed z
    nib.save(nib.Nifti1Image(mock_volume(SHAPE, 0), None, header=hdr), str(path))


def _zeros(path: Path) -> None:
    save_nifti(path, np.zeros(SHAPE, np.int16))


def _loop(path: Path) -> None:
    path.unlink()
    path.symlink_to(path.name)  # points at itself


def _escape(path: Path) -> None:
    outside = save_nifti(path.parents[2] / "outside.nii.gz", mock_volume(SHAPE, 0))
    path.unlink()
    path.symlink_to(outside)


PLANTS = {"truncated": (_truncate, "truncated"), "huge": (_huge_header, "declares 30000x30000x30000"),
          "singular": (_singular, "singular"), "all-zero": (_zeros, "all zeros"),
          "loop": (_loop, "symlink loop"), "escape": (_escape, "outside the data root")}


@pytest.fixture
def dataset(tmp_path) -> tuple[Path, Path]:
    root = make_brats2023(tmp_path / "d" / "root", 2, shape=SHAPE)
    manifest = write_manifest(build_brats_manifest(root, num_folds=2), tmp_path / "m.json")
    return root, manifest


@pytest.mark.parametrize("kind", list(PLANTS))
def test_a_bad_file_is_one_error_in_validate_and_in_the_pipeline(dataset, kind, capsys):
    root, manifest = dataset
    plant, words = PLANTS[kind]
    bad = _file(root, "t1c")
    plant(bad)

    problems = [p for p in validate_manifest(manifest, root=root) if p.severity == "error"]
    assert [p.path for p in problems] == [str(bad)], problems
    assert words in problems[0].message, problems[0].message

    cfg = DataConfig(roi=(8, 8, 8), label_mode="labels", cache="none")
    with pytest.raises(DataError) as exc:
        to_grid = build_transforms(cfg, train=False)
        for item in load_manifest(manifest, root):
            to_grid(item)
    assert exc.value.path == str(bad) and words in exc.value.problem, str(exc.value)

    # the CLI: one line naming the file, exit 2 (latents encode runs the same pipeline)
    codec = root.parent / "codec"
    if not codec.exists():
        from medidiff.latents import WaveletCodec, WaveletCodecConfig

        WaveletCodec(WaveletCodecConfig()).save_pretrained(codec)
    old_cache = root.parent / "lat"  # a previous cache: a failed run must keep it (written to a stage)
    old_cache.mkdir(exist_ok=True)
    (old_cache / "cache.json").write_text("previous")
    capsys.readouterr()
    rc = main(["latents", "encode", "--codec", str(codec), "--manifest", str(manifest), "--root", str(root),
               "--out", str(root.parent / "lat"), "--set", "data.roi=[8,8,8]", "--set", "data.cache=none",
               "--set", "data.label_mode=none"])
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip() and "encode:" not in ln]  # minus the progress bar
    assert rc == 2 and len(lines) == 1 and str(bad) in lines[0] and words in lines[0], err
    assert [p.name for p in old_cache.iterdir()] == ["cache.json"] and (old_cache / "cache.json").read_text() == "previous"
    assert not [p for p in root.parent.iterdir() if p.name.startswith(".tmp_")]


@pytest.mark.parametrize("kind", ["truncated", "huge", "singular"])
def test_reference_grids_use_the_same_checks(tmp_path, kind):
    path = save_nifti(tmp_path / "ref.nii.gz", mock_volume(SHAPE, 0))
    plant, words = PLANTS[kind]
    plant(path)
    if kind == "truncated":  # header-only: a truncated body is the pipeline's to catch
        reference_geometry(path)
        return
    with pytest.raises(DataError, match=words):
        reference_geometry(path)


def test_the_voxel_cap_is_configurable(dataset):
    root, manifest = dataset
    n = int(np.prod(SHAPE))
    assert any("over the limit" in p.message for p in validate_manifest(manifest, root=root, max_voxels=n - 1))
    assert validate_manifest(manifest, root=root, max_voxels=n) == []
    cfg = DataConfig(roi=(8, 8, 8), cache="none", max_voxels=n - 1)
    with pytest.raises(DataError, match="data.max_voxels"):
        build_transforms(cfg, train=False)(load_manifest(manifest, root)[0])
    assert DataConfig().max_voxels == DEFAULT_MAX_VOXELS
    assert load_config(None, ["data.max_voxels=1000"]).data.max_voxels == 1000


def test_a_missing_root_gets_a_hint(dataset, capsys):
    root, manifest = dataset
    with pytest.raises(DataError, match="pass --root"):
        load_manifest(manifest)  # the default root (the manifest's folder) holds none of the files
    codec = root.parent / "codec"
    from medidiff.latents import WaveletCodec, WaveletCodecConfig

    WaveletCodec(WaveletCodecConfig()).save_pretrained(codec)
    assert main(["latents", "encode", "--codec", str(codec), "--manifest", str(manifest),
                 "--out", str(root.parent / "lat")]) == 2
    assert "pass --root" in capsys.readouterr().err


def test_label_hints_fit_the_values_found():
    allowed = (0, 1, 2, 3)
    assert label_problem([0, 1, 2, 3], {}, allowed) is None
    assert label_problem([0, 1, 2, 4], {4: 3}, allowed) is None
    hint_2021 = label_problem([0, 1, 2, 4], {}, allowed)
    assert "{4: 3}" in hint_2021
    five = label_problem([0, 5], {}, allowed)
    assert "[5]" in five and "{4: 3}" not in five
    post = label_problem([0, 1, 2, 3, 4], {}, allowed)
    assert "2024 post-treatment" in post and "resection cavity" in post
    mixed = label_problem([0, 1, 2, 3], {4: 3}, allowed)  # declared 2021, holds 2023's ET = 3
    assert mixed is not None and "2021" in mixed


def test_a_2021_set_holding_label_3_is_refused_in_validate_and_the_pipeline(tmp_path):
    from tests.data.mock_brats import brats2021_case_id, make_brats2021, mock_label

    root = make_brats2021(tmp_path / "d", 2)
    manifest = write_manifest(build_brats_manifest(root), tmp_path / "m.json")  # records label_map {4: 3}
    cid = brats2021_case_id(1)
    seg = root / cid / f"{cid}_seg.nii.gz"
    save_nifti(seg, mock_label((12, 12, 8), 1, et_value=3))  # a 2023-style file among 2021 data
    problems = validate_manifest(manifest, root=root, labels=[0, 1, 2, 3])
    assert [p.path for p in problems] == [str(seg)] and "2021" in problems[0].message
    from medidiff.data.manifest import label_map_of, read_manifest

    to_grid = build_transforms(DataConfig(roi=(8, 8, 8), cache="none"), train=False,
                               label_map=label_map_of(read_manifest(manifest)))
    to_grid(load_manifest(manifest, root)[0])  # the 2021 case passes
    with pytest.raises(DataError, match="declared BraTS 2021") as exc:
        to_grid(load_manifest(manifest, root)[1])
    assert exc.value.path == str(seg)
