"""Data pipeline: MONAI dict transforms, datasets with caches, seeded loaders (tiny volumes)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import NibabelReader

from medidiff.config import ConfigError
from medidiff.data.brats import BRATS_AFFINE, MODALITIES, REGIONS
from medidiff.data.config import DataConfig, check_roi_divisible, nearest_multiple
from medidiff.data.dataset import collate_cases, make_dataset, make_loader, pipeline_hash
from medidiff.data.transforms import Pipeline, build_transforms, deterministic_transforms, output_shape
from medidiff.errors import DataError

SHAPE = (20, 18, 14)  # (X, Y, Z) in RAS order


# --------------------------------------------------------------------------------------------
# Tiny cases on disk
# --------------------------------------------------------------------------------------------


def _save(path: Path, data: np.ndarray, affine: np.ndarray, big_endian: bool = False) -> str:
    if big_endian:
        header = nib.Nifti1Header(endianness=">")
        header.set_data_dtype(">f4")
        img = nib.Nifti1Image(data.astype(">f4"), affine, header=header)
    else:
        img = nib.Nifti1Image(data, affine)
    nib.save(img, str(path))
    return str(path)


def _brain(shape=SHAPE) -> np.ndarray:
    g = np.meshgrid(*[np.arange(n, dtype=float) for n in shape], indexing="ij")
    c = [(n - 1) / 2 for n in shape]
    return sum(((x - m) / (0.38 * n)) ** 2 for x, m, n in zip(g, c, shape)) <= 1.0


def _modalities(seed: int, shape=SHAPE) -> list[np.ndarray]:
    """Four positive noisy brains on a zero background; t1n carries an asymmetric marker."""
    rng = np.random.default_rng(seed)
    brain = _brain(shape)
    vols = []
    for k in range(4):
        v = np.where(brain, rng.uniform(100, 200, shape) * (k + 1), 0.0).astype(np.float32)
        vols.append(v)
    vols[0][6, 11, 8] = 5000.0  # marker off every symmetry plane
    vols[0][7, 11, 8] = 3000.0  # and its neighbour, so x flips are visible
    return vols


def _label(shape=SHAPE, et: int = 3) -> np.ndarray:
    lab = np.zeros(shape, np.uint8)
    lab[7:13, 6:12, 4:10] = 2
    lab[8:12, 7:11, 5:9] = 1
    lab[9:11, 8:10, 6:8] = et
    return lab


def write_case(
    folder: Path,
    name: str,
    *,
    seed: int = 0,
    affine: np.ndarray | None = None,
    vols: list[np.ndarray] | None = None,
    label: np.ndarray | None = None,
    big_endian: bool = False,
) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    affine = np.eye(4) if affine is None else affine
    vols = _modalities(seed) if vols is None else vols
    label = _label() if label is None else label
    images = [_save(folder / f"{name}_{m}.nii.gz", v, affine, big_endian) for m, v in zip(MODALITIES, vols)]
    seg = _save(folder / f"{name}_seg.nii.gz", label, affine)
    return {"image": images, "label": seg, "case_id": name, "fold": 0}


def cfg_(**kw) -> DataConfig:
    base = dict(roi=(16, 16, 16), cache="none", crop_foreground=True, flip_prob=0.0)
    base.update(kw)
    return DataConfig(**base)


def run_det(item: dict, cfg: DataConfig, **kw) -> dict:
    return Pipeline(deterministic_transforms(cfg, **kw))(dict(item))


# --------------------------------------------------------------------------------------------
# Pipeline output
# --------------------------------------------------------------------------------------------


def test_batch_shape_range_dtype_labels(tmp_path):
    items = [write_case(tmp_path, f"c{i}", seed=i) for i in range(3)]
    cfg = cfg_()
    loader = make_loader(make_dataset(items, cfg), batch_size=2, shuffle=False, seed=0)
    batches = list(loader)
    assert [b["case_id"] for b in batches] == [["c0", "c1"], ["c2"]]
    b = batches[0]
    assert b["image"].shape == (2, 4, *cfg.roi) and b["image"].dtype == torch.float32
    assert b["image"].min() == -1.0 and b["image"].max() <= 1.0
    assert b["label"].shape == (2, 1, *cfg.roi) and b["label"].dtype == torch.int64
    assert set(b["label"].unique().tolist()) <= {0, 1, 2, 3}
    # every tumour voxel survives the crop (the brain box holds the tumour)
    assert (b["label"][0] == 3).sum() == (_label() == 3).sum()


def test_region_masks_travel_as_uint8_and_a_worker_batch_equals_the_in_process_one(tmp_path, monkeypatch):
    # region masks are uint8 (a quarter of float32's bytes per loader copy); a worker stacks its batch
    # straight into shared memory: the same tensors as stacking in the main process
    items = [write_case(tmp_path, f"c{i}", seed=i) for i in range(4)]
    ds = make_dataset(items, cfg_(cache="memory", flip_prob=0.0, label_mode="regions"))  # make_loader's flips
    alone = list(make_loader(ds, batch_size=2, shuffle=True, seed=3))
    workers = list(make_loader(ds, batch_size=2, shuffle=True, seed=3, num_workers=2))
    assert [b["case_id"] for b in alone] == [b["case_id"] for b in workers]
    for a, w in zip(alone, workers):
        assert a["label"].dtype == w["label"].dtype == torch.uint8 and set(a["label"].unique().tolist()) <= {0, 1}
        assert w["image"].dtype == torch.float32
        assert torch.equal(a["image"], w["image"]) and torch.equal(a["label"], w["label"])
    # (any tensor a worker sends arrives shared, so the shared-memory stack is checked where it is made:
    # collate in the main process stacks into ordinary memory, in a worker into shared memory)
    cases = [ds[i] for i in range(2)]
    in_main = collate_cases(cases)
    assert not in_main["image"].is_shared() and not in_main["label"].is_shared()
    monkeypatch.setattr(torch.utils.data, "get_worker_info", lambda: object())
    in_worker = collate_cases(cases)
    assert in_worker["image"].is_shared() and in_worker["label"].is_shared()
    assert torch.equal(in_worker["image"], in_main["image"]) and torch.equal(in_worker["label"], in_main["label"])


def test_background_is_minus_one_and_brain_in_range(tmp_path):
    # No crop and roi == input grid: output voxels line up with the input voxels.
    item = write_case(tmp_path, "c", seed=1)
    cfg = cfg_(roi=SHAPE, crop_foreground=False)
    out = run_det(item, cfg)["image"].numpy()
    brain = _brain()
    assert out.shape == (4, *SHAPE)
    assert np.all(out[:, ~brain] == -1.0)
    assert np.all((out[:, brain] >= -1.0) & (out[:, brain] <= 1.0))
    # percentiles: the 0.5th..99.5th percentile band spans [-1, 1] per modality
    for c in range(4):
        assert out[c, brain].max() == 1.0 and out[c, brain].min() == -1.0
        assert np.mean(out[c, brain] == 1.0) < 0.02  # only the top 0.5% (and ties) clip


def test_outside_tumour_scaling_keeps_the_normal_brain_level_whatever_the_tumour(tmp_path):
    """percentile_region outside_tumour: a bright enhancing tumour no longer sets the case's top, so the
    normal brain lands where the same case without it does (over the whole brain it drops); every voxel is
    (v - lo) / (hi - lo) * (top + 1) - 1 of the normal brain's percentiles, clipped at 1, read through the
    label after orientation and crop (an LAS case, cropped to its brain)."""
    vols, lab = _modalities(3), _label()
    tumour = lab > 0
    normal = _brain() & ~tumour
    bright = [v.copy() for v in vols]
    bright[1][tumour] = 1.5 * vols[1][tumour] + vols[1].max()  # t1c's enhancing tumour, above every normal voxel
    las = np.eye(4)
    las[0, 0], las[0, 3] = -1.0, SHAPE[0] - 1
    flip = [v[::-1] for v in bright]
    with_t = write_case(tmp_path / "a", "a", vols=flip, label=lab[::-1], affine=las)
    without = write_case(tmp_path / "b", "b", vols=vols, label=lab)
    for region, top, moves in (("brain", 1.0, True), ("outside_tumour", 1.0, False), ("outside_tumour", -0.5, False),
                               ("brain", 0.0, True)):
        cfg = cfg_(roi=SHAPE, crop_foreground=region == "outside_tumour", percentile_region=region, percentile_top=top)
        out_a, out_b = run_det(with_t, cfg), run_det(without, cfg)
        a, b = out_a["image"].numpy()[1], out_b["image"].numpy()[1]
        in_a, in_b = out_a["label"].numpy()[0] > 0, out_b["label"].numpy()[0] > 0
        brain_a, brain_b = a > -1, b > -1
        shift = np.median(a[brain_a & ~in_a]) - np.median(b[brain_b & ~in_b])
        assert (shift < -0.3) if moves else (abs(shift) < 1e-6), (region, top, shift)
        if region == "outside_tumour":
            lo, hi = np.percentile(bright[1][normal].astype(np.float64), [0.5, 99.5])
            want = np.clip((bright[1][tumour].astype(np.float64) - lo) / (hi - lo) * (top + 1) - 1, -1, 1)
            assert np.allclose(np.sort(a[in_a]), np.sort(want), atol=1e-5)  # the label still on its voxels
            assert (want < 1).any() if top < 0 else (want == 1).all()  # top -0.5: linear, top 1: all clipped
            assert np.isclose(np.percentile(b[brain_b & ~in_b], 99.5), top, atol=0.05)
        assert (a == -1).sum() >= a.size - _brain().sum() - 5  # the background stays -1
    # the disk cache's name follows the scaling (a cache of the other scaling is not reused)
    assert len({pipeline_hash(cfg_(**kw)) for kw in ({}, {"percentile_top": 0.0},
                                                     {"percentile_region": "outside_tumour"})}) == 3
    # without labels the option refuses to be set
    with pytest.raises(ValueError, match="outside_tumour needs the labels"):
        cfg_(label_mode="none", percentile_region="outside_tumour")
    with pytest.raises(ValueError, match="percentile_top"):
        cfg_(percentile_top=1.5)


def test_a_written_case_keeps_its_scale_whatever_its_faint_background(tmp_path):
    """evaluate reads a generated case as written ((x + 1) / 2 in [0, 1]) and scales it again: over its brain, not
    its non-zero voxels. A real case written so reads back as it was, on either scale, clean, with a faint haze or
    with speckle outside the brain (generated backgrounds are near 0, not 0), or with one modality written dim; the
    haze stays visible outside (the background check reads it); over the non-zero voxels (the real pipeline's
    brain) the haze lifts the brain (the trap)."""
    from medidiff.data.brain import written_brain_mask
    from medidiff.eval.data import synthetic_transforms

    cfg = cfg_(roi=SHAPE, crop_foreground=False)
    real = write_case(tmp_path / "real", "r", seed=4)
    x = run_det(real, cfg)["image"].numpy()  # [-1, 1], background -1
    brain = _brain()
    rng = np.random.default_rng(0)
    u = (x + 1) / 2  # as generate writes a case
    outside = np.broadcast_to(~brain, u.shape)
    haze = np.where(outside, np.abs(rng.normal(0, 0.006, u.shape)), u)
    speckle = np.where(outside & (rng.random(u.shape) < 0.02), rng.uniform(0.02, 0.3, u.shape), u)
    faint = haze.copy()
    faint[3][brain] *= 0.08  # one dim modality: its haze is near its brain's level, and must not let the haze in
    assert not (written_brain_mask(faint) & ~written_brain_mask(haze)).any()
    for region in ("brain", "outside_tumour"):  # the scale of the real case itself, read back on either
        scale = cfg_(roi=SHAPE, crop_foreground=False, percentile_region=region)
        want = run_det(real, scale)["image"].numpy()
        read = synthetic_transforms(scale, background=0.0, with_label=True)
        for name, w in (("clean", u), ("haze", haze), ("speckle", speckle), ("faint", faint)):
            item = write_case(tmp_path / name, name, vols=[v.astype(np.float32) for v in w])
            back = read(dict(item))["image"].numpy()
            assert np.abs(back[:, brain] - want[:, brain]).max() < 0.01, (region, name)
            if name == "haze" and region == "brain":
                assert (back[:, ~brain] > -1).mean() > 0.5  # not painted -1: the background check sees it
                lifted = Pipeline(deterministic_transforms(cfg))(dict(item))["image"].numpy()
                assert np.median(lifted[:, brain] - x[:, brain]) > 0.01  # percentiles over the whole volume


def test_orientations_and_big_endian_agree(tmp_path):
    """One world content written as RAS, LAS and LPS (big-endian) must give identical outputs."""
    vols, lab = _modalities(0), _label()
    X, Y, _ = SHAPE
    origin = np.array([-10.0, 20.0, 5.0])
    ras = np.eye(4)
    ras[:3, 3] = origin
    las = ras.copy()
    las[0, 0], las[0, 3] = -1.0, origin[0] + X - 1  # voxel i -> world x = origin + (X-1-i)
    lps = las.copy()
    lps[1, 1], lps[1, 3] = -1.0, origin[1] + Y - 1
    items = [
        write_case(tmp_path / "ras", "ras", affine=ras, vols=vols, label=lab),
        write_case(tmp_path / "las", "las", affine=las, vols=[v[::-1] for v in vols], label=lab[::-1]),
        write_case(
            tmp_path / "lps", "lps", affine=lps, vols=[v[::-1, ::-1] for v in vols],
            label=lab[::-1, ::-1], big_endian=True,
        ),
    ]
    assert nib.load(items[2]["image"][0]).get_data_dtype().byteorder == ">"
    assert nib.aff2axcodes(lps) == ("L", "P", "S")
    cfg = cfg_(roi=(16, 16, 16))
    outs = [run_det(it, cfg) for it in items]
    ref = outs[0]
    for o in outs[1:]:
        np.testing.assert_array_equal(o["image"].numpy(), ref["image"].numpy())
        np.testing.assert_array_equal(o["label"].numpy(), ref["label"].numpy())
        np.testing.assert_allclose(o["image"].affine.numpy(), ref["image"].affine.numpy())
    # the marker sits at its world position in the RAS output
    img = ref["image"]
    idx = np.unravel_index(int(img[0].argmax()), img.shape[1:])
    world = img.affine.numpy() @ np.array([*idx, 1.0])
    np.testing.assert_allclose(world[:3], origin + np.array([6, 11, 8]))


def test_anisotropic_spacing_resampled_to_1mm(tmp_path):
    shape = (10, 12, 6)
    spacing = np.diag([1.0, 1.0, 3.0, 1.0])
    spacing[:3, 3] = [2.0, -4.0, 10.0]
    g = np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij")
    base = (100 + g[0] + 2 * g[1] + 3 * g[2]).astype(np.float32)  # no zeros: all brain
    t1n = base.copy()
    t1n[3, 7, 2] = 10_000.0
    vols = [t1n, base, base * 2, base * 3]
    item = write_case(tmp_path, "aniso", affine=spacing, vols=vols, label=np.zeros(shape, np.uint8))
    # voxel centres span (n-1)*3 mm in z, sampled every 1 mm -> (6-1)*3 + 1 = 16 slices
    expected = (10, 12, 16)
    cfg = cfg_(roi=expected, crop_foreground=False, percentiles=(0.0, 100.0))
    out = run_det(item, cfg)["image"]
    assert tuple(out.shape[1:]) == expected
    np.testing.assert_allclose(np.diag(out.affine.numpy())[:3], [1.0, 1.0, 1.0])
    idx = np.unravel_index(int(out[0].argmax()), expected)
    world = out.affine.numpy() @ np.array([*idx, 1.0])
    np.testing.assert_allclose(world, spacing @ np.array([3, 7, 2, 1.0]))


# --------------------------------------------------------------------------------------------
# Labels
# --------------------------------------------------------------------------------------------


def test_label_map_2021(tmp_path):
    lab2021 = _label(et=4)
    item = write_case(tmp_path, "old", label=lab2021)
    cfg = cfg_(roi=SHAPE, crop_foreground=False)
    with pytest.raises(DataError, match=r"old_seg\.nii\.gz.*\[4\]"):
        run_det(item, cfg)
    out = run_det(item, cfg, label_map={4: 3})["label"][0].numpy()
    np.testing.assert_array_equal(out, _label(et=3))
    # the manifest item's own map (JSON keys are strings) works the same way
    out2 = run_det({**item, "label_map": {"4": 3}}, cfg)["label"][0].numpy()
    np.testing.assert_array_equal(out2, out)


def test_regions_and_onehot_channels(tmp_path):
    lab = _label()
    item = write_case(tmp_path, "r", label=lab)
    regions = run_det(item, cfg_(roi=SHAPE, crop_foreground=False, label_mode="regions"))["label"].numpy()
    assert regions.shape == (3, *SHAPE)
    for c, (name, values) in enumerate(REGIONS.items()):
        np.testing.assert_array_equal(regions[c] == 1, np.isin(lab, values), err_msg=name)
    # WT ⊇ TC ⊇ ET on the hand-made map, and each is non-empty
    assert regions[0].sum() > regions[1].sum() > regions[2].sum() > 0
    onehot = run_det(item, cfg_(roi=SHAPE, crop_foreground=False, label_mode="onehot"))["label"].numpy()
    assert onehot.shape == (4, *SHAPE)
    np.testing.assert_array_equal(onehot.sum(0), 1.0)
    np.testing.assert_array_equal(onehot.argmax(0), lab)
    none = run_det(item, cfg_(label_mode="none"))
    assert "label" not in none


def test_downsample_area_and_majority(tmp_path):
    item = write_case(tmp_path, "d")
    full = run_det(item, cfg_(roi=(16, 16, 16)))
    low = run_det(item, cfg_(roi=(16, 16, 16), downsample=2))
    assert tuple(low["image"].shape) == (4, 8, 8, 8) == (4, *output_shape(cfg_(downsample=2)))
    pooled = torch.nn.functional.avg_pool3d(full["image"].as_tensor()[None], 2)[0]
    np.testing.assert_allclose(low["image"].numpy(), pooled.numpy(), atol=1e-6)
    # majority label of each 2x2x2 block (ties -> higher label)
    f = full["label"][0].numpy().reshape(8, 2, 8, 2, 8, 2).transpose(0, 2, 4, 1, 3, 5).reshape(8, 8, 8, 8)
    counts = np.stack([(f == v).sum(-1) for v in range(4)])
    expected = 3 - counts[::-1].argmax(0)
    np.testing.assert_array_equal(low["label"][0].numpy(), expected)
    # the new voxel (0,0,0) is centred on its block
    A, a = full["image"].affine.numpy(), low["image"].affine.numpy()
    np.testing.assert_allclose(a @ [0, 0, 0, 1], A @ [0.5, 0.5, 0.5, 1])
    np.testing.assert_allclose(a @ [1, 0, 0, 1], A @ [2.5, 0.5, 0.5, 1])


# --------------------------------------------------------------------------------------------
# Errors that name the file
# --------------------------------------------------------------------------------------------


def test_nan_voxel_names_the_file(tmp_path):
    vols = _modalities(0)
    vols[2][9, 9, 7] = np.nan
    item = write_case(tmp_path, "nan", vols=vols)
    with pytest.raises(DataError) as exc:
        run_det(item, cfg_())
    assert exc.value.path.endswith("nan_t2w.nii.gz")
    assert "NaN" in str(exc.value) and "(9, 9, 7)" in str(exc.value)


def test_data_error_crosses_dataloader_workers(tmp_path):
    """A bad file read in a DataLoader worker still reaches the user as a DataError naming it."""
    from medidiff.data.dataset import make_dataset, make_loader

    vols = _modalities(0)
    vols[0][4, 4, 4] = np.inf
    items = [write_case(tmp_path, "bad", vols=vols)]
    loader = make_loader(make_dataset(items, cfg_(), train=False), batch_size=1, shuffle=False, num_workers=1)
    with pytest.raises(DataError) as exc:
        next(iter(loader))
    assert exc.value.path.endswith("bad_t1n.nii.gz") and "Inf" in str(exc.value)


def test_4d_input_names_the_file(tmp_path):
    item = write_case(tmp_path, "four")
    four = np.stack(_modalities(0), axis=-1)  # MSD style: 4 modalities in one file
    _save(Path(item["image"][1]), four, np.eye(4))
    with pytest.raises(DataError, match="expected a 3D volume") as exc:
        run_det(item, cfg_())
    assert exc.value.path == item["image"][1]


def test_label_out_of_range_names_the_file(tmp_path):
    lab = _label()
    lab[0, 0, 0] = 5
    item = write_case(tmp_path, "five", label=lab)
    with pytest.raises(DataError, match=r"\[5\]") as exc:
        run_det(item, cfg_())
    assert exc.value.path == item["label"]


def test_missing_label_and_missing_file(tmp_path):
    item = write_case(tmp_path, "m")
    with pytest.raises(DataError, match="no 'label'"):
        run_det({k: v for k, v in item.items() if k != "label"}, cfg_())
    # unlabelled use is fine without it
    out = run_det({k: v for k, v in item.items() if k != "label"}, cfg_(), with_label=False)
    assert "label" not in out
    Path(item["image"][3]).unlink()
    with pytest.raises(DataError, match="file not found") as exc:
        run_det(item, cfg_())
    assert exc.value.path == item["image"][3]


def test_roi_not_divisible_names_nearest_size():
    assert nearest_multiple(155, 16) == 160 and nearest_multiple(150, 16) == 144
    with pytest.raises(ConfigError, match=r"data\.roi \(155,240,240\) not divisible by 16: use \(160,240,240\)"):
        build_transforms(DataConfig(roi=(155, 240, 240)), divisor=16)
    with pytest.raises(ConfigError, match=r"use \(160,240,240\)"):
        check_roi_divisible((155, 240, 240), 8, 2)
    with pytest.raises(ConfigError, match="downsample"):
        DataConfig(roi=(15, 16, 16), downsample=2)
    build_transforms(DataConfig(roi=(160, 240, 240)), divisor=16)  # valid: no error


def test_modality_subset_selects_channels(tmp_path):
    item = write_case(tmp_path, "sub")
    full = run_det(item, cfg_())["image"]
    two = run_det(item, cfg_(modalities=["t2f", "t1n"]))["image"]
    assert two.shape[0] == 2
    np.testing.assert_array_equal(two[0].numpy(), full[3].numpy())
    np.testing.assert_array_equal(two[1].numpy(), full[0].numpy())


# --------------------------------------------------------------------------------------------
# Datasets, caches, determinism
# --------------------------------------------------------------------------------------------


@pytest.fixture
def count_reads(monkeypatch):
    calls = {"n": 0}
    original = NibabelReader.read

    def counting(self, data, **kwargs):
        calls["n"] += 1
        return original(self, data, **kwargs)

    monkeypatch.setattr(NibabelReader, "read", counting)
    return calls


def test_memory_cache_decodes_on_a_ranks_share_of_the_cores_with_the_same_items(tmp_path, monkeypatch):
    import os

    from medidiff.data import dataset as dataset_module

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(32)), raising=False)
    for key in ("LOCAL_WORLD_SIZE", "LOCAL_SIZE", "SLURM_NTASKS_PER_NODE", "SLURM_TASKS_PER_NODE"):
        monkeypatch.delenv(key, raising=False)
    assert dataset_module.cache_threads(0) == 16 and dataset_module.cache_threads(20) == 20  # at most 16, or the workers
    monkeypatch.setenv("SLURM_TASKS_PER_NODE", "4(x2)")  # srun: 4 tasks on each of 2 nodes
    assert dataset_module.cache_threads(0) == 8
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")  # torchrun's count wins: 8 ranks on the node share its 32 cores
    assert dataset_module.cache_threads(0) == 4 and dataset_module.cache_threads(6) == 6
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "not a number")  # ignored, the next launcher variable counts
    assert dataset_module.cache_threads(0) == 8
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    assert dataset_module.cache_threads(0) == 1
    # the cached items do not depend on how many threads decoded them
    items = [write_case(tmp_path, f"c{i}", seed=i) for i in range(5)]
    cfg = cfg_(cache="memory", flip_prob=0.0, label_mode="regions")
    cached = {}
    for threads in (1, 3):
        monkeypatch.setattr(dataset_module, "cache_threads", lambda workers, n=threads: n)
        cached[threads] = make_dataset(items, cfg)._cache
    for a, b in zip(cached[1], cached[3]):
        assert a["case_id"] == b["case_id"] and torch.equal(a["image"], b["image"]) and torch.equal(a["label"], b["label"])


def test_memory_cache_filled_by_processes_holds_the_threads_items_and_names_a_bad_file(tmp_path, monkeypatch):
    """Large sets on many cores decode in worker processes (MONAI's threads hold the GIL for much of a
    case): the same items in the same order, in ordinary memory, and a bad file still a DataError."""
    import os

    from medidiff.utils import threads as threads_module

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    assert threads_module.decode_processes(1164, 16) == 16 and threads_module.decode_processes(5, 16) == 0
    assert threads_module.decode_processes(1164, 32) == 16  # at most one a core
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert threads_module.decode_processes(1000, 8) == 0  # 8 loader workers on 2 cores: threads
    items = [write_case(tmp_path, f"c{i}", seed=i) for i in range(5)]
    cfg = cfg_(cache="memory", flip_prob=0.0, label_mode="regions")
    cached = {}
    for processes in (0, 2):
        monkeypatch.setattr(threads_module, "decode_processes", lambda n, threads, p=processes: p)
        cached[processes] = make_dataset(items, cfg)._cache
    for a, b in zip(cached[0], cached[2], strict=True):
        assert a["case_id"] == b["case_id"] and torch.equal(a["image"], b["image"]) and torch.equal(a["label"], b["label"])
        assert not b["image"].is_shared() and not b["label"].is_shared()  # copied out of /dev/shm
    vols = _modalities(0)
    vols[1][3, 3, 3] = np.nan
    bad = items[:2] + [write_case(tmp_path, "bad", vols=vols)]
    with pytest.raises(DataError) as exc:
        make_dataset(bad, cfg)
    assert exc.value.path.endswith("bad_t1c.nii.gz") and "NaN" in str(exc.value)


@pytest.mark.parametrize("given", [0, 2])
def test_workers_that_stop_leave_the_rest_to_threads(monkeypatch, caplog, given):
    """Workers that cannot start (a daemonic caller) or stop midway (a /dev/shm too small, a killed or
    silent worker) leave a warning, and threads decode the rest in order."""
    from medidiff.utils import threads as threads_module

    def failing_workers(fn, items, processes):
        yield from (fn(x) for x in items[:given])
        raise RuntimeError("DataLoader worker (pid 123) is killed by signal: Bus error.")

    monkeypatch.setattr(threads_module, "decode_processes", lambda n, threads: 2)
    monkeypatch.setattr(threads_module, "_process_results", failing_workers)
    with caplog.at_level("WARNING"), threads_module.case_map(lambda x: x * 2, [1, 2, 3, 4], what="test") as out:
        assert list(out) == [2, 4, 6, 8]
    assert f"stopped after {given} of 4 cases" in caplog.text and "Bus error" in caplog.text


def test_a_pipeline_error_in_a_worker_is_raised_as_its_own(monkeypatch, caplog):
    """An error of the decoding itself (not a worker that died) reaches the caller with its own type and
    message, as without workers, and no warning blames the processes."""
    from medidiff.utils import threads as threads_module

    def decode(x):
        if x == 21:
            raise RuntimeError(f"case {x}: a transform's own error")  # how MONAI wraps a transform's error
        return torch.full((2,), float(x))

    monkeypatch.setattr(threads_module, "decode_processes", lambda n, threads: 2)
    got = []
    with caplog.at_level("WARNING"), pytest.raises(RuntimeError, match="^case 21: a transform's own error$"):
        with threads_module.case_map(decode, list(range(40))) as out:
            got.extend(float(r[0]) for r in out)
    assert got == [float(i) for i in range(21)] and "processes" not in caplog.text


def test_a_caller_that_stops_early_stops_the_workers(monkeypatch):
    """Leaving the block early (an error in the caller's loop) ends the worker processes at once."""
    import multiprocessing

    from medidiff.utils import threads as threads_module

    monkeypatch.setattr(threads_module, "decode_processes", lambda n, threads: 2)
    # only this block's workers count: an earlier test's DataLoader iterator, kept alive by the traceback
    # its pytest.raises holds, may keep its own worker until the garbage collector runs (CI saw one)
    earlier = set(multiprocessing.active_children())
    with pytest.raises(KeyError), threads_module.case_map(lambda x: torch.full((2,), float(x)), list(range(40))) as out:
        assert next(out).tolist() == [0.0, 0.0]
        assert len(set(multiprocessing.active_children()) - earlier) == 2
        raise KeyError("the caller's own error")
    assert not set(multiprocessing.active_children()) - earlier


def test_disk_cache_is_reused(tmp_path, count_reads):
    items = [write_case(tmp_path / "data", f"c{i}", seed=i) for i in range(2)]
    cfg = cfg_(cache="disk", flip_prob=0.5)
    ds = make_dataset(items, cfg, cache_dir=tmp_path / "cache")
    first = [ds[i]["image"] for i in range(2)]
    reads = count_reads["n"]
    assert reads == 4  # per case: the stacked modalities and the label
    again = [ds[i]["image"] for i in range(2)]
    assert count_reads["n"] == reads  # second epoch: cache only
    # a fresh dataset (next run) with the same pipeline reuses the files too
    ds2 = make_dataset(items, cfg, cache_dir=tmp_path / "cache")
    list(make_loader(ds2, batch_size=2, seed=0))
    assert count_reads["n"] == reads
    for a, b in zip(first, again):  # cached content is the pipeline's output (flips aside)
        assert torch.equal(a, b) or torch.equal(a, b.flip(1))
    # a different pipeline never reads the old cache
    make_dataset(items, cfg_(cache="disk", roi=(16, 16, 8)), cache_dir=tmp_path / "cache")[0]
    assert count_reads["n"] == reads + 2


def test_memory_cache_decodes_once(tmp_path, count_reads):
    items = [write_case(tmp_path, f"c{i}", seed=i) for i in range(2)]
    ds = make_dataset(items, cfg_(cache="memory"))
    reads = count_reads["n"]
    assert reads == 4
    list(make_loader(ds, batch_size=1, seed=0))
    list(make_loader(ds, batch_size=1, seed=0))
    assert count_reads["n"] == reads


@pytest.mark.parametrize("label_mode", ["regions", "labels"])
def test_memory_cache_is_never_written_by_the_random_steps(tmp_path, label_mode):
    # The memory cache hands its cached case to the random steps without MONAI's deep copy (a 56 MB
    # copy per 128^3 item): the steps must leave it as it was, flips and dtype casts included.
    items = [write_case(tmp_path, f"c{i}", seed=i) for i in range(2)]
    ds = make_dataset(items, cfg_(cache="memory", flip_prob=1.0, label_mode=label_mode))
    cached = [{k: v.clone() for k, v in c.items() if isinstance(v, torch.Tensor)} for c in ds._cache]
    first = [ds[i] for i in range(2)]
    for _ in range(2):
        batch = next(iter(make_loader(ds, batch_size=2, shuffle=False, seed=0)))
        batch["image"].add_(1.0)  # a consumer writing into its batch does not reach the cache either
    for before, after in zip(cached, ds._cache):
        for k, v in before.items():
            assert torch.equal(v, after[k]), k
    for i, item in enumerate(first):  # every load flips the same cached case: the same result
        assert torch.equal(item["image"], ds[i]["image"])
        assert torch.equal(item["image"], cached[i]["image"].flip(1))


def test_flip_draws_leave_no_trace_in_the_memory_cache(tmp_path):
    # an unflipped draw used to record itself in the cached MetaTensor's applied_operations: one entry
    # per draw per worker for the whole run; the cache now holds plain tensors and stays as it was
    from monai.data import MetaTensor

    items = [write_case(tmp_path, f"c{i}", seed=i) for i in range(2)]
    ds = make_dataset(items, cfg_(cache="memory", flip_prob=0.5, label_mode="regions"))
    for _ in range(6):
        [ds[i] for i in range(2)]
    for c in ds._cache:
        for k in ("image", "label"):
            assert not isinstance(c[k], MetaTensor) or len(c[k].applied_operations) == 0, k
    unflipped = make_dataset(items, cfg_(cache="memory", flip_prob=0.0, label_mode="regions"))
    for c, i in zip(ds._cache, range(2)):  # the same values as the cache without flips
        assert torch.equal(torch.as_tensor(c["image"]), torch.as_tensor(unflipped._cache[i]["image"]))


def test_same_seed_same_batches_including_flips(tmp_path):
    items = [write_case(tmp_path, f"c{i}", seed=i) for i in range(4)]
    ds = make_dataset(items, cfg_(cache="memory", flip_prob=0.5))

    def epochs(seed: int) -> list[dict]:
        loader = make_loader(ds, batch_size=2, shuffle=True, seed=seed)
        return [b for _ in range(3) for b in loader]

    a, b = epochs(7), epochs(7)
    for x, y in zip(a, b):
        assert x["case_id"] == y["case_id"]
        assert torch.equal(x["image"], y["image"]) and torch.equal(x["label"], y["label"])
    # the flips really happen: some case is seen both flipped and unflipped across epochs
    seen: dict[str, set] = {}
    for batch in a:
        for cid, img in zip(batch["case_id"], batch["image"]):
            seen.setdefault(cid, set()).add(float(img[0, :8].sum()))
    assert any(len(v) > 1 for v in seen.values())
    # a flip is an exact mirror along x (axis 0 of the spatial dims), label included
    c = [batch for batch in a if "c0" in batch["case_id"]]
    imgs = [bt["image"][bt["case_id"].index("c0")] for bt in c]
    for img in imgs[1:]:
        assert torch.equal(img, imgs[0]) or torch.equal(img, imgs[0].flip(1))


def test_eval_split_has_no_random_flip(tmp_path):
    items = [write_case(tmp_path, "c0")]
    ds = make_dataset(items, cfg_(flip_prob=1.0), train=False)
    det = run_det(items[0], cfg_())
    assert torch.equal(ds[0]["image"].as_tensor(), det["image"].as_tensor())
    ds_train = make_dataset(items, cfg_(flip_prob=1.0), train=True)
    assert torch.equal(ds_train[0]["image"].as_tensor(), det["image"].as_tensor().flip(1))


def test_brats_lps_affine_roundtrip_shape(tmp_path):
    """Files with the SRI24 affine (reported as LPS) come out in RAS with the roi shape."""
    item = write_case(tmp_path, "sri", affine=BRATS_AFFINE)
    out = run_det(item, cfg_())
    assert nib.aff2axcodes(out["image"].affine.numpy()) == ("R", "A", "S")
    assert tuple(out["image"].shape[1:]) == (16, 16, 16)


def test_threads_sharing_one_pipeline_load_every_modality(tmp_path):
    """data.cache: memory fills its cache with data.num_workers threads through ONE pipeline. MONAI's
    NibabelReader keeps its last read's file names on the instance, so a shared reader loaded a
    4-modality case as one volume when another thread read a label in between (seen on a GPU node
    with 4 workers: a batch of [4, ...] and [1, ...] images)."""
    from concurrent.futures import ThreadPoolExecutor

    items = [write_case(tmp_path / f"c{i}", f"c{i}", seed=i) for i in range(6)]
    pipe = Pipeline(deterministic_transforms(cfg_()))
    with ThreadPoolExecutor(8) as pool:
        shapes = list(pool.map(lambda it: tuple(pipe(dict(it))["image"].shape), items * 8))
    assert all(s[0] == len(MODALITIES) for s in shapes), sorted(set(shapes))
