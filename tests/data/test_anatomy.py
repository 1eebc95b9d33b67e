"""Anatomy data set: real-template anatomy, contrasts measured with the true tissue maps, brain
volume, label nesting, determinism, the BraTS layout through manifest build/validate, the CLI."""

from __future__ import annotations

import json
import socket

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from medidiff.cli.main import main
from medidiff.data import anatomy
from medidiff.data.anatomy import (
    AnatomyError,
    AnatomySpec,
    anatomy_affine,
    make_anatomy_case,
    write_anatomy_dataset,
)
from medidiff.data.brats import BRATS_AFFINE, BRATS_SHAPE, MODALITIES
from medidiff.data.phantom import case_seed
from medidiff.data.synthetic_set import case_id
from medidiff.io import SYNTHETIC_DESCRIP, read_provenance

SHAPE = (48, 48, 40)  # the BraTS field of view at 5 x 5 x 3.9 mm
CSF, GM, WM = 1, 2, 3


@pytest.fixture(scope="module")
def tumour_cases():
    spec = AnatomySpec(shape=SHAPE, tumour_fraction=1.0)
    return [make_anatomy_case(case_seed(7, i), spec=spec) for i in range(5)]


def test_template_is_read_without_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the template must not touch the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    anatomy._raw_template.cache_clear()
    anatomy._template.cache_clear()
    case = make_anatomy_case(0, spec=AnatomySpec(shape=(32, 32, 24)))
    assert case.brain_mask.any()
    # the files read are nilearn's own: the loader nilearn documents gives the same T1
    datasets = pytest.importorskip("nilearn.datasets")
    ours = nib.load(str(anatomy.template_files()["t1"])).get_fdata()
    theirs = datasets.load_mni152_template(resolution=1).get_fdata()
    assert np.allclose(ours / ours.max(), theirs)


def test_geometry_is_the_brats_grid():
    assert np.array_equal(anatomy_affine(BRATS_SHAPE, (1.0, 1.0, 1.0)), BRATS_AFFINE)
    spec = AnatomySpec(shape=(32, 32, 24))
    assert np.allclose(spec.voxel_mm, (7.5, 7.5, 155 / 24))  # the template resampled, not cropped
    assert nib.aff2axcodes(anatomy_affine(spec.shape, spec.voxel_mm)) == ("L", "P", "S")


def test_modality_contrasts_with_true_tissue_masks(tumour_cases):
    for case in tumour_cases:
        t, seg, im = case.tissue, case.seg, case.images

        def mean(mod, code):
            return float(im[mod][(t == code) & (seg == 0)].mean())

        def region(mod, label):
            return float(im[mod][seg == label].mean())

        assert mean("t1n", WM) > mean("t1n", GM) > mean("t1n", CSF)
        assert mean("t1c", WM) > mean("t1c", GM) > mean("t1c", CSF)
        assert mean("t2w", CSF) > mean("t2w", GM) > mean("t2w", WM)
        assert mean("t2f", CSF) < min(mean("t2f", GM), mean("t2f", WM))  # FLAIR suppresses CSF
        assert region("t2f", 2) > max(mean("t2f", GM), mean("t2f", WM))  # oedema bright on FLAIR
        assert region("t1c", 3) > max(mean("t1c", WM), region("t1c", 1), region("t1c", 2))  # the rim
        assert region("t2w", 1) > mean("t2w", WM)  # necrosis T2-bright


def test_tumour_labels_nested_inside_the_brain(tumour_cases):
    hemis = set()
    for case in tumour_cases:
        seg, brain = case.seg, case.brain_mask
        assert set(np.unique(seg)) == {0, 1, 2, 3}
        wt, tc, ncr = seg > 0, np.isin(seg, (1, 3)), seg == 1
        assert not (wt & ~brain).any()
        assert not (ndimage.binary_dilation(ncr) & brain & ~tc).any(), "ET wraps the necrotic core"
        assert not (ndimage.binary_dilation(tc) & brain & ~wt).any(), "oedema wraps the core"
        aff = case.affine
        tumour_x = (aff @ np.append(np.argwhere(wt).mean(axis=0), 1.0))[0]
        midline_x = (aff @ np.append(np.argwhere(brain).mean(axis=0), 1.0))[0]
        hemi = case.metadata["tumour"]["hemisphere"]
        assert hemi == ("right" if tumour_x > midline_x else "left")  # RAS: +x is the right
        hemis.add(hemi)
    assert hemis == {"left", "right"}


def test_skull_stripped_and_tissue_map_agree(tumour_cases):
    for case in tumour_cases:
        brain = case.brain_mask
        for mod, img in case.images.items():
            assert img.dtype == np.float32 and img.shape == SHAPE
            assert np.all(img[~brain] == 0.0) and np.all(img[brain] > 0.0), mod
        assert set(np.unique(case.tissue)) == {0, 1, 2, 3}
        assert np.array_equal(case.tissue > 0, brain)
    # whole brains: the vertex stays inside the grid (the top slice holds no brain)
    assert not any(c.brain_mask[:, :, -1].any() for c in tumour_cases)


def test_cases_differ_and_are_deterministic():
    spec = AnatomySpec(shape=SHAPE)
    a, b = make_anatomy_case(case_seed(3, 1), spec=spec), make_anatomy_case(case_seed(3, 1), spec=spec)
    c = make_anatomy_case(case_seed(3, 2), spec=spec)
    for m in MODALITIES:
        assert np.array_equal(a.images[m], b.images[m])
    assert np.array_equal(a.seg, b.seg) and np.array_equal(a.tissue, b.tissue)
    # different anatomy, not just different noise: the brain masks differ
    overlap = (a.brain_mask & c.brain_mask).sum() / (a.brain_mask | c.brain_mask).sum()
    assert overlap < 0.97
    # the tumour decision has its own stream: anatomy without the tumour is the same brain
    never = AnatomySpec(shape=SHAPE, tumour_fraction=0.0)
    always = AnatomySpec(shape=SHAPE, tumour_fraction=1.0)
    n0, a0 = make_anatomy_case(case_seed(3, 4), spec=never), make_anatomy_case(case_seed(3, 4), spec=always)
    assert not n0.seg.any() and a0.seg.any() and n0.metadata["tumour"] is None
    for key in ("scale", "rotation_deg", "shift_mm", "ventricle_scale", "modality_gain"):
        assert n0.metadata[key] == a0.metadata[key], key
    away = ~ndimage.binary_dilation(a0.seg > 0, iterations=4)  # beyond the mass effect's reach
    assert np.array_equal(n0.tissue[away], a0.tissue[away]) or (n0.tissue[away] != a0.tissue[away]).mean() < 0.01


def test_full_brats_grid_brain_volume_in_adult_range():
    case = make_anatomy_case(case_seed(0, 0), spec=AnatomySpec())
    assert case.images["t1n"].shape == BRATS_SHAPE and np.array_equal(case.affine, BRATS_AFFINE)
    litres = case.brain_mask.sum() / 1e6  # 1 mm voxels
    assert 1.0 <= litres <= 1.8
    assert abs(case.metadata["brain_volume_ml"] / 1000 - litres) < 1e-3


@pytest.mark.parametrize("seed", range(4))
def test_brain_volume_in_adult_range_over_cases(seed):
    spec = AnatomySpec(shape=(96, 96, 62))  # 2.5 mm; the volume is physical at any spacing
    litres = make_anatomy_case(case_seed(seed, 9), spec=spec).metadata["brain_volume_ml"] / 1000
    assert 1.0 <= litres <= 1.8


def test_written_set_builds_and_validates(tmp_path, capsys):
    out = tmp_path / "anat"
    assert main(["data", "anatomy", str(out), "--cases", "3", "--shape", "32", "32", "24", "--no-progress"]) == 0
    record = json.loads((out / "anatomy.json").read_text())
    assert record["complete"] and "Louis Collins" in record["template"]["copyright"]
    folder = out / case_id(1)
    names = sorted(p.name for p in folder.glob("*.nii.gz"))
    assert names == sorted(f"{case_id(1)}-{s}.nii.gz" for s in (*MODALITIES, "seg", "tissue"))
    img = nib.load(str(folder / f"{case_id(1)}-t2f.nii.gz"))
    assert img.header["descrip"].tobytes().decode().rstrip("\0") == SYNTHETIC_DESCRIP[:80]
    prov = read_provenance(folder / f"{case_id(1)}-t2f.nii.gz")
    assert prov["generator"] == "medidiff.data.anatomy" and "Louis Collins" in prov["template"]["copyright"]
    tissue = nib.load(str(folder / f"{case_id(1)}-tissue.nii.gz"))
    assert tissue.get_data_dtype() == np.uint8 and set(np.unique(np.asarray(tissue.dataobj))) <= {0, 1, 2, 3}
    manifest = tmp_path / "m.json"
    assert main(["manifest", "build", "brats", str(out), "-o", str(manifest), "--folds", "3"]) == 0
    cases = json.loads(manifest.read_text())["training"]
    assert len(cases) == 3 and all("tissue" not in json.dumps(c) for c in cases)  # ignored by the builder
    assert main(["manifest", "validate", str(manifest), "--root", str(out)]) == 0
    # the written case equals the case regenerated alone
    alone = make_anatomy_case(case_seed(0, 1), spec=AnatomySpec(shape=(32, 32, 24)))
    assert np.array_equal(np.asarray(img.dataobj), alone.images["t2f"])


def test_rewrite_with_fewer_cases_and_foreign_folder(tmp_path):
    out = tmp_path / "anat"
    write_anatomy_dataset(out, 3, spec=AnatomySpec(shape=(32, 32, 24)), progress=False)
    write_anatomy_dataset(out, 2, seed=5, spec=AnatomySpec(shape=(32, 32, 24)), progress=False)
    assert sorted(p.name for p in out.iterdir()) == [case_id(0), case_id(1), "anatomy.json"]
    phantom_like = tmp_path / "other"
    phantom_like.mkdir()
    (phantom_like / "notes.txt").write_text("mine")
    with pytest.raises(Exception, match="not an anatomy data set"):
        write_anatomy_dataset(phantom_like, 1, spec=AnatomySpec(shape=(32, 32, 24)), progress=False)
    assert (phantom_like / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize(
    "extra",
    [
        ["--cases", "0"],
        ["--cases", "1", "--shape", "16", "32", "32"],
        ["--cases", "1", "--spacing", "0.5"],
        ["--cases", "1", "--spacing", "1", "2"],
        ["--cases", "1", "--tumour-fraction", "2"],
    ],
)
def test_cli_bad_values_exit_2(tmp_path, capsys, extra):
    assert main(["data", "anatomy", str(tmp_path / "x"), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("medidiff: error:") and "\n" not in err
    assert not (tmp_path / "x").exists()


def test_dry_run_writes_nothing(tmp_path, capsys):
    out = tmp_path / "x"
    assert main(["data", "anatomy", str(out), "--cases", "2", "--dry-run"]) == 0
    assert not out.exists() and "tumour_fraction" in capsys.readouterr().out


def test_missing_nilearn_is_one_clear_error(monkeypatch):
    monkeypatch.setattr(anatomy.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(AnatomyError, match="pip install nilearn"):
        anatomy.template_files()


def test_synthetic_set_spacing_fits_the_demo_grid():
    from medidiff.cli.demo_cmd import PRESETS, data_grid

    for preset in PRESETS.values():
        shape, spacing = data_grid(preset, "anatomy")
        fov = np.asarray(shape) * np.asarray(spacing)
        assert np.allclose(fov, BRATS_SHAPE, atol=1.0)  # the BraTS field of view
        # a shrunk MNI brain (<= 145 x 181 x 155 mm before the 0.9 base scale and +-10 %) fits the roi
        assert np.all(np.array([145, 181, 155]) * 0.9 * 1.1 / np.asarray(spacing) <= np.asarray(preset["shape"]) + 4)
        assert data_grid(preset, "phantom") == (preset["shape"], (1.0, 1.0, 1.0))


@pytest.mark.parametrize("seed", range(4))
def test_hemisphere_follows_the_site_on_coarse_grids(seed):
    """Coarse voxels raise the minimum tumour radii, so few sites are deep enough: the fallback
    must keep the drawn hemisphere, and the label must say where the tumour is."""
    case = make_anatomy_case(seed, spec=AnatomySpec(shape=(24, 24, 24), spacing=(14, 14, 14), tumour_fraction=1.0))
    tumour = case.metadata["tumour"]
    if tumour is not None:
        assert tumour["hemisphere"] == ("right" if tumour["centre_mni_mm"][0] > 0 else "left")
