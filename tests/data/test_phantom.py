"""Phantom data set: BraTS layout, geometry, label nesting, contrasts, determinism, CLI."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from medidiff.cli.main import main
from medidiff.data.brats import BRATS_AFFINE, BRATS_SHAPE, MODALITIES
from medidiff.data.phantom import (
    CSF,
    ED,
    ET,
    GM,
    NCR,
    WM,
    PhantomError,
    PhantomSpec,
    brats_affine,
    case_id,
    case_seed,
    make_phantom_case,
    write_phantom_dataset,
)
from medidiff.errors import DataError, MedidiffError
from medidiff.io import SYNTHETIC_DESCRIP, read_provenance

SHAPE = (32, 32, 24)
SEEDS = range(6)


@pytest.fixture(scope="module")
def tumour_cases():
    return [make_phantom_case(case_seed(7, i), SHAPE, tumour=True) for i in SEEDS]


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("phantom")
    folders = write_phantom_dataset(out, 3, shape=SHAPE, seed=1, progress=False)
    return out, folders


def _load(folder, suffix):
    return nib.load(str(folder / f"{folder.name}-{suffix}.nii.gz"))


def test_affine_generalises_brats():
    assert np.array_equal(brats_affine(BRATS_SHAPE), BRATS_AFFINE)
    aff = brats_affine(SHAPE)
    assert nib.aff2axcodes(aff) == ("L", "P", "S")  # x and y flipped, like BraTS files
    assert aff[1, 3] == SHAPE[1] - 1 and aff[0, 3] == 0.0
    assert np.allclose(np.abs(np.diag(aff)[:3]), 1.0)


def test_written_files_follow_brats_2023_layout(written):
    out, folders = written
    assert [f.name for f in folders] == [case_id(i) for i in range(3)] == [
        "BraTS-GLI-00000-000",
        "BraTS-GLI-00001-000",
        "BraTS-GLI-00002-000",
    ]
    for i, folder in enumerate(folders):
        for suffix in (*MODALITIES, "seg"):
            img = _load(folder, suffix)
            assert img.shape == SHAPE
            assert np.allclose(img.affine, brats_affine(SHAPE))
            assert np.allclose(img.header.get_zooms(), (1.0, 1.0, 1.0))
            assert img.header["descrip"].tobytes().rstrip(b"\0").decode() == SYNTHETIC_DESCRIP[:79]
            prov = read_provenance(folder / f"{folder.name}-{suffix}.nii.gz")
            assert prov["synthetic"] is True and prov["generator"] == "medidiff.data.phantom"
            assert prov["seed"] == 1 and prov["case_index"] == i
        seg = np.asarray(_load(folder, "seg").dataobj)
        assert set(np.unique(seg)) <= {0, 1, 2, 3}
    meta = json.loads((out / "phantom.json").read_text())
    assert meta["complete"] and meta["cases"] == 3 and meta["spec"]["shape"] == list(SHAPE)
    assert [c["id"] for c in meta["case_list"]] == [f.name for f in folders]


def test_seg_is_stored_as_uint8(written):
    _, folders = written
    assert _load(folders[0], "seg").get_data_dtype() == np.uint8


def test_tumour_subregions_are_nested(tumour_cases):
    for case in tumour_cases:
        seg, brain = case.seg, case.brain_mask
        assert set(np.unique(seg)) == {0, 1, 2, 3}, "a tumour case has all three sub-regions"
        wt, tc, ncr = seg > 0, np.isin(seg, (1, 3)), seg == 1
        assert not (wt & ~brain).any(), "tumour stays inside the brain"
        # the necrotic core is wrapped by enhancing rim, the core by oedema (within the brain)
        assert not (ndimage.binary_dilation(ncr) & brain & ~tc).any()
        assert not (ndimage.binary_dilation(tc) & brain & ~wt).any()
        assert case.metadata["has_tumour"] and case.metadata["tumour"]["volume_ml"]["ET"] > 0


def test_no_tumour_case_has_empty_seg():
    case = make_phantom_case(3, SHAPE, tumour=False)
    assert not case.seg.any() and case.metadata["tumour"] is None
    assert not np.isin(case.tissue, (NCR, ET, ED)).any()


def test_tumour_fraction_extremes_decide_tumours():
    never, always = PhantomSpec(shape=SHAPE, tumour_fraction=0.0), PhantomSpec(shape=SHAPE, tumour_fraction=1.0)
    none = [make_phantom_case(case_seed(0, i), spec=never) for i in range(3)]
    every = [make_phantom_case(case_seed(0, i), spec=always) for i in range(3)]
    assert not any(c.seg.any() for c in none) and all(c.seg.any() for c in every)
    # the tumour decision has its own stream: the skull (never touched by a tumour) is unchanged
    for a, b in zip(none, every):
        assert np.array_equal(a.brain_mask, b.brain_mask)


def test_modality_contrasts(tumour_cases):
    for case in tumour_cases:
        t, im = case.tissue, case.images

        def mean(mod, code):
            return float(im[mod][t == code].mean())

        assert mean("t1n", WM) > mean("t1n", GM) > mean("t1n", CSF)
        assert mean("t2f", CSF) < mean("t2f", WM)  # FLAIR suppresses CSF
        assert mean("t2w", CSF) > mean("t2w", WM)
        for mod in ("t2f", "t2w"):
            assert mean(mod, ED) > mean(mod, WM), f"oedema bright on {mod}"
        assert mean("t1c", ET) > mean("t1c", WM)  # enhancing rim
        assert mean("t1n", NCR) < mean("t1n", WM) and mean("t2w", NCR) > mean("t2w", WM)


def test_skull_stripped_zero_outside_positive_inside(tumour_cases):
    for case in tumour_cases:
        for mod, img in case.images.items():
            assert img.dtype == np.float32 and img.shape == SHAPE
            assert np.all(img[~case.brain_mask] == 0.0), mod
            assert np.all(img[case.brain_mask] > 0.0), mod
            assert 100.0 < float(img.max()) < 5000.0  # scanner-like scale
    # the scalp and skull exist in the anatomy model even though the images are stripped
    assert (tumour_cases[0].tissue[~tumour_cases[0].brain_mask] > 0).any()


def test_keep_skull_shows_head_outside_brain():
    case = make_phantom_case(2, spec=PhantomSpec(shape=SHAPE, skull_strip=False))
    outside = ~case.brain_mask & (case.tissue > 0)
    assert (case.images["t1n"][outside] > 0).all()


def test_deterministic_and_independent_of_case_count(tmp_path):
    a = make_phantom_case(case_seed(4, 1), SHAPE)
    b = make_phantom_case(case_seed(4, 1), SHAPE)
    c = make_phantom_case(case_seed(4, 2), SHAPE)
    for m in MODALITIES:
        assert np.array_equal(a.images[m], b.images[m])
    assert np.array_equal(a.seg, b.seg) and not np.array_equal(a.images["t1n"], c.images["t1n"])

    two = write_phantom_dataset(tmp_path / "two", 2, shape=SHAPE, seed=4, progress=False)
    three = write_phantom_dataset(tmp_path / "three", 3, shape=SHAPE, seed=4, progress=False)
    for f2, f3 in zip(two, three):
        for suffix in (*MODALITIES, "seg"):
            assert np.array_equal(_load(f2, suffix).get_fdata(), _load(f3, suffix).get_fdata())
    # case 1 regenerated alone equals the written one
    assert np.array_equal(np.asarray(_load(two[1], "t2f").dataobj), a.images["t2f"])


def test_worker_processes_write_the_same_set(tmp_path, written):
    """workers=2 (spawned processes) writes the volumes and manifest one process writes."""
    out, folders = written
    par = write_phantom_dataset(tmp_path / "par", 3, shape=SHAPE, seed=1, progress=False, workers=2)
    assert [f.name for f in par] == [f.name for f in folders]
    for f1, f2 in zip(folders, par):
        for suffix in (*MODALITIES, "seg"):
            assert np.array_equal(np.asarray(_load(f1, suffix).dataobj), np.asarray(_load(f2, suffix).dataobj))
    one, two = (json.loads((d / "phantom.json").read_text()) for d in (out, tmp_path / "par"))
    assert two["complete"] and one["case_list"] == two["case_list"]  # index order, same entries
    with pytest.raises(MedidiffError, match="workers"):
        write_phantom_dataset(tmp_path / "bad", 1, shape=SHAPE, progress=False, workers=0)


def test_hemisphere_agrees_with_world_coordinates(tumour_cases):
    seen = set()
    for case in tumour_cases:
        aff = case.affine
        tumour_x = (aff @ np.append(np.argwhere(case.seg > 0).mean(axis=0), 1.0))[0]
        midline_x = (aff @ np.append(np.argwhere(case.brain_mask).mean(axis=0), 1.0))[0]
        # RAS: +x is the patient's right; with the BraTS affine all world x are <= 0, so compare
        # with the brain's own mid-sagittal position rather than with x = 0.
        expected = "right" if tumour_x > midline_x else "left"
        assert case.metadata["tumour"]["hemisphere"] == expected
        seen.add(expected)
    assert seen == {"left", "right"}, "the seeds should exercise both hemispheres"


def test_rewrite_overwrites_cleanly_and_refuses_foreign_folders(tmp_path):
    out = tmp_path / "ph"
    write_phantom_dataset(out, 3, shape=SHAPE, seed=0, progress=False)
    write_phantom_dataset(out, 2, shape=SHAPE, seed=5, progress=False)
    assert sorted(p.name for p in out.iterdir()) == [case_id(0), case_id(1), "phantom.json"]
    assert read_provenance(out / case_id(0) / f"{case_id(0)}-t1n.nii.gz")["seed"] == 5

    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(DataError, match="phantom.json"):
        write_phantom_dataset(foreign, 1, shape=SHAPE, progress=False)
    assert (foreign / "notes.txt").read_text() == "keep me"


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(shape=(8, 32, 32)),
        dict(shape=(32, 32)),
        dict(shape=(32.5, 32, 32)),
        dict(tumour_fraction=1.5),
    ],
)
def test_bad_spec_is_a_clear_error(kwargs):
    with pytest.raises(PhantomError) as err:
        PhantomSpec(**kwargs)
    assert isinstance(err.value, MedidiffError) and isinstance(err.value, ValueError)
    assert next(iter(kwargs)) in str(err.value)


def test_cli_writes_and_dry_run_writes_nothing(tmp_path, capsys):
    out = tmp_path / "cli"
    args = ["data", "phantom", str(out), "--cases", "2", "--shape", *map(str, SHAPE), "--seed", "3"]
    assert main([*args, "--dry-run"]) == 0
    assert not out.exists()
    assert "tumour_fraction" in capsys.readouterr().out
    assert main([*args, "--no-progress"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [case_id(0), case_id(1), "phantom.json"]


@pytest.mark.parametrize(
    "extra",
    [
        ["--cases", "0"],
        ["--cases", "2", "--shape", "8", "32", "32"],
        ["--cases", "1", "--tumour-fraction", "2"],
        ["--cases", "1", "--workers", "0"],
    ],
)
def test_cli_bad_values_exit_2(tmp_path, capsys, extra):
    assert main(["data", "phantom", str(tmp_path / "x"), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("medidiff: error:") and "\n" not in err
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("extra", [["--cases", "abc"], [], ["--cases", "1", "--shape", "32", "32"]])
def test_cli_malformed_args_exit_2(tmp_path, extra):
    with pytest.raises(SystemExit) as exc:
        main(["data", "phantom", str(tmp_path / "x"), *extra])
    assert exc.value.code == 2


@pytest.mark.slow
def test_full_brats_grid():
    case = make_phantom_case(0, BRATS_SHAPE, tumour=True)
    assert np.array_equal(case.affine, BRATS_AFFINE)
    lo, hi = np.argwhere(case.brain_mask).min(0), np.argwhere(case.brain_mask).max(0)
    assert (lo > 0).all() and (hi < np.array(BRATS_SHAPE) - 1).all(), "brain inside the grid"
