"""The SR stage's host-cut windows (issue 15): the same patch values as whole cases, fewer bytes.

Invariants: a window's patch is the case's region there (flipped when flipped); the conditioning and
latent computed from a window equal the whole case's at the patch, borders included; a loader hands
out the same windows for the same (seed, epoch, index) whatever its number of workers and after a
resume; batches hold window-sized tensors only; the memory cache is never written into; with the
training set held on the device (train.data_on_device) the windows cut there are the loader's.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch.utils.data import DataLoader

from medidiff.cascade.patches import crop_patches
from medidiff.cascade.sr_task import SRLoss, degrade, resolve_sr_net_config, sr_condition, train_window_steps
from medidiff.cascade.windows import PATCH_ORIGIN, WINDOW_ORIGIN, RandSRWindowd, WindowGeometry, whole_cases
from medidiff.config import load_config
from medidiff.data.dataset import collate_cases
from medidiff.data.manifest import build_brats_manifest, write_manifest
from medidiff.data.phantom import write_phantom_dataset
from medidiff.nets import build_net
from medidiff.objectives import build_objective
from medidiff.training.diffusion import build_codec_for, build_datasets
from medidiff.training import loop
from medidiff.training.device_data import DeviceBatches, DeviceWindow, random_steps
from medidiff.training.sampler import ResumableSampler, SeededItems, StreamSampler
from tests.training.test_device_data import _run

SPATIAL = (24, 20, 16)
PATCH = (8, 8, 8)


def _region(x: torch.Tensor, origin, size) -> torch.Tensor:
    """x (..., *S) -> the block at ``origin`` of ``size`` (last len(size) dims)."""
    lead = (slice(None),) * (x.ndim - len(size))
    return x[(*lead, *(slice(o, o + p) for o, p in zip(origin, size)))]


def test_window_geometry_keeps_the_patch_and_a_halo_inside_the_case():
    g = WindowGeometry.for_sr(SPATIAL, PATCH, scale=2, factor=2)
    assert g.align == 2 and g.window == (12, 12, 12)
    for o in [(0, 0, 0), (2, 4, 8), (16, 12, 8), (14, 10, 6)]:
        start, inside = g.place(o)
        for s, i, p, w, n in zip(start, inside, PATCH, g.window, SPATIAL):
            assert 0 <= s and s + w <= n and s % 2 == 0  # inside the case, on whole blocks
            assert 0 <= i and i + p <= w
            assert (i >= 2 or s == 0) and (w - i - p >= 2 or s + w == n)  # a halo or the case's border
    # scale 3 on a factor-2 codec: windows and origins on multiples of 6
    g3 = WindowGeometry.for_sr((36, 36, 36), (8, 8, 8), scale=3, factor=2)
    assert g3.align == 6 and g3.window == (24, 24, 24)
    with pytest.raises(ValueError, match="larger than the case"):
        WindowGeometry.for_sr((8, 8, 8), (16, 8, 8), scale=2, factor=2)


@pytest.mark.parametrize("flip", [0.0, 1.0])
def test_window_patch_is_the_region_of_the_case(flip):
    g = WindowGeometry.for_sr(SPATIAL, PATCH, scale=2, factor=2)
    case = {"image": torch.randn(2, *SPATIAL), "label": (torch.rand(3, *SPATIAL) > 0.5).float()}
    seen = set()
    for seed in range(40):
        t = RandSRWindowd(["image", "label"], g, flip_prob=flip)
        t.set_random_state(seed)
        out = t(case)
        start, inside = out[WINDOW_ORIGIN], out[PATCH_ORIGIN]
        seen.add(tuple(s + i for s, i in zip(start, inside)))
        for key in ("image", "label"):
            assert tuple(out[key].shape) == (case[key].shape[0], *g.window)
            shown = case[key].flip(1) if flip else case[key]  # the case as augmented
            assert torch.equal(out[key], _region(shown, start, g.window))
            assert torch.equal(_region(out[key], inside, PATCH),
                               _region(shown, [s + i for s, i in zip(start, inside)], PATCH))
            # an unflipped window is a view of the case (the batch's stack is its only copy); a flip copies,
            # and so does a window of an uncached case (a view would keep the whole decoded case alive)
            shares = out[key].untyped_storage().data_ptr() == case[key].untyped_storage().data_ptr()
            assert shares == (not flip)
            copied = RandSRWindowd(["image", "label"], g, flip_prob=flip, views=False)
            copied.set_random_state(seed)
            alone = copied(case)[key]
            assert torch.equal(alone, out[key])
            assert alone.untyped_storage().data_ptr() != case[key].untyped_storage().data_ptr()
    assert len(seen) > 20  # origins spread over the case, borders included below
    assert any(o[0] == 0 for o in seen) or any(o[0] == SPATIAL[0] - PATCH[0] for o in seen)


@pytest.mark.parametrize("levels,spatial", [(1, SPATIAL), (2, (32, 24, 16))])
def test_window_conditioning_and_latent_equal_the_whole_case_at_the_patch(levels, spatial):
    """degrade -> augmentation noise -> trilinear upsampling -> Haar encoding of a window gives, at
    the patch, exactly the whole case's values (with the same noise on the low-res grid): the
    windows change which bytes are copied, not what the SR net learns from."""
    cfg = load_config(None, ["stage=sr", "data.downsample=1", f"data.roi={list(spatial)}", "data.label_mode=regions",
                             "conditioning.generate_labels=true", f"cascade.patch_size={list(PATCH)}",
                             f"latent.levels={levels}"])
    codec = build_codec_for(cfg)
    f = 2**levels
    g = WindowGeometry.for_sr(spatial, PATCH, scale=2, factor=f)
    x = torch.rand(1, 7, *spatial) * 2 - 1
    x[:, 4:] = torch.where(torch.rand(1, 3, *spatial) > 0.7, 1.0, -1.0)  # region masks in {-1, 1}
    low = degrade(x, 2, 4)
    noise = torch.randn_like(low)
    level = torch.tensor([0.3])
    full = sr_condition(codec, low, level=level, noise=noise, hr_spatial=spatial)["cond_image"]
    z = codec.encode(x)
    last = [s - p for s, p in zip(spatial, PATCH)]
    for origin in [(0, 0, 0), tuple(last), (g.align, 2 * g.align, 0), (last[0], 0, g.align), (2 * g.align, last[1], 0)]:
        start, inside = g.place(origin)
        win = _region(x, start, g.window)
        win_low = degrade(win, 2, 4)
        win_noise = _region(noise, [s // 2 for s in start], win_low.shape[2:])
        cond = sr_condition(codec, win_low, level=level, noise=win_noise, hr_spatial=g.window)["cond_image"]
        lat, lat_in, lat_p = [o // f for o in origin], [i // f for i in inside], [p // f for p in PATCH]
        torch.testing.assert_close(_region(cond, lat_in, lat_p), _region(full, lat, lat_p), atol=1e-6, rtol=0)
        torch.testing.assert_close(_region(codec.encode(win), lat_in, lat_p), _region(z, lat, lat_p), atol=1e-6, rtol=0)


def test_only_block_local_codecs_get_windows():
    """A periodized db2 latent of a window is not the window of the latent: such codecs keep whole cases."""
    base = ["stage=sr", "data.downsample=1", f"data.roi={list(SPATIAL)}", f"cascade.patch_size={list(PATCH)}"]
    haar = load_config(None, base)
    assert isinstance(train_window_steps(haar, build_codec_for(haar))[0], RandSRWindowd)
    db2 = load_config(None, [*base, "latent.wavelet=db2"])
    assert train_window_steps(db2, build_codec_for(db2)) is None


def test_sr_loss_crops_the_patch_the_batch_names():
    """SRLoss on a window batch hands the net the whole case's conditioning at window + patch origin."""
    cfg = load_config(None, ["stage=sr", "data.downsample=1", f"data.roi={list(SPATIAL)}", "data.label_mode=regions",
                             "conditioning.generate_labels=true", f"cascade.patch_size={list(PATCH)}",
                             "cascade.aug_max_level=0", "net.channels=[16, 32]", "net.num_res_blocks=1",
                             "net.norm_groups=8", "objective.type=flow", "sampler.name=euler"])
    codec = build_codec_for(cfg)
    net_cfg = dataclasses.replace(resolve_sr_net_config(cfg, codec), zero_init=False)
    seen = {}

    class Recording(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = build_net(net_cfg)

        def forward(self, x, t, **cond):
            seen.update(cond)
            return self.net(x, t, **cond)

    g = WindowGeometry.for_sr(SPATIAL, PATCH, scale=2, factor=2)
    image, label = torch.rand(4, *SPATIAL) * 2 - 1, (torch.rand(3, *SPATIAL) > 0.7).float()
    t = RandSRWindowd(["image", "label"], g)
    t.set_random_state(3)
    batch = collate_cases([t({"image": image, "label": label, "case_id": "a"})])
    SRLoss(cfg, codec, build_objective(cfg.objective))(Recording(), batch, torch.Generator().manual_seed(0))
    x = torch.cat([image, label * 2 - 1])[None]
    full = sr_condition(codec, degrade(x, 2, 4), level=torch.zeros(1), noise=torch.zeros(1, 7, 12, 10, 8),
                        hr_spatial=SPATIAL)["cond_image"]
    where = [(w + p) // 2 for w, p in zip(batch[WINDOW_ORIGIN][0], batch[PATCH_ORIGIN][0])]
    torch.testing.assert_close(seen["cond_image"], crop_patches(full, [where], [p // 2 for p in PATCH]),
                               atol=1e-6, rtol=0)


@pytest.fixture(scope="module")
def sr_data(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("windows")
    write_phantom_dataset(tmp / "data", 4, shape=(36, 36, 34), seed=0, progress=False)
    write_manifest(build_brats_manifest(tmp / "data", num_folds=2), tmp / "m.json")
    cfg = load_config(None, ["name=sr", "stage=sr", f"output_dir={tmp / 'runs'}", f"data.manifest={tmp / 'm.json'}",
                             f"data.root={tmp / 'data'}", "data.fold=null", "data.roi=[32, 32, 32]",
                             "data.cache=memory", "data.label_mode=regions", "data.flip_prob=0.5",
                             "conditioning.generate_labels=true", "cascade.patch_size=[16, 16, 16]"])
    codec = build_codec_for(cfg)
    train, _ = build_datasets(cfg, tmp, train_random=train_window_steps(cfg, codec))
    return {"cfg": cfg, "train": train, "tmp": tmp}


def _batches(train, *, workers: int, epoch: int = 0, position: int = 0, n: int = 4) -> list[dict]:
    """The training loop's loader (medidiff.training.loop._loader): SeededItems over a StreamSampler."""
    order = ResumableSampler(len(train), seed=7)
    loader = DataLoader(SeededItems(train), batch_size=2, sampler=StreamSampler(order, 2, epoch, position),
                        collate_fn=collate_cases, num_workers=workers)
    out, it = [], iter(loader)
    for _ in range(n):
        out.append(next(it))
    del it
    return out


def test_same_windows_for_the_same_items_whatever_the_workers_and_after_a_resume(sr_data):
    main = _batches(sr_data["train"], workers=0)
    workers = _batches(sr_data["train"], workers=2)
    resumed = _batches(sr_data["train"], workers=0, epoch=1, position=0, n=2)  # batches 2, 3 of the stream
    for a, b in zip(main, workers):
        assert a[PATCH_ORIGIN] == b[PATCH_ORIGIN] and a[WINDOW_ORIGIN] == b[WINDOW_ORIGIN]
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["label"], b["label"])
    for a, b in zip(main[2:], resumed):
        assert a[WINDOW_ORIGIN] == b[WINDOW_ORIGIN] and torch.equal(a["image"], b["image"])
    # windows move from epoch to epoch (an item's seed includes the epoch)
    assert {o for b in main for o in b[WINDOW_ORIGIN]} != {main[0][WINDOW_ORIGIN][0]}


def test_batches_hold_windows_only_and_the_cache_stays_intact(sr_data):
    train = sr_data["train"]
    cached = [{k: v.clone() for k, v in item.items() if torch.is_tensor(v)} for item in train._cache]
    window = WindowGeometry.for_sr((32, 32, 32), (16, 16, 16), scale=2, factor=2).window
    for batch in _batches(train, workers=0, n=4) + _batches(train, workers=2, n=4):
        tensors = [v for v in batch.values() if torch.is_tensor(v)]
        assert tensors and all(tuple(v.shape[2:]) == window for v in tensors)  # (B, C, 20, 20, 20), not 32^3
        # the windows are views of the cache until the batch's stack copies them: a batch never
        # shares memory with it
        assert not any(v.untyped_storage().data_ptr() == item[k].untyped_storage().data_ptr()
                       for v in tensors for item in train._cache for k in ("image", "label"))
    for before, item in zip(cached, train._cache):  # copy_cache is off: nothing wrote into the cache
        for k, v in before.items():
            assert torch.equal(torch.as_tensor(item[k]), v)
    with whole_cases(train):  # the codec statistics see whole cases
        assert tuple(train[0]["image"].shape[1:]) == (32, 32, 32) and PATCH_ORIGIN not in train[0]
    assert tuple(train[0]["image"].shape[1:]) == window


def _disk_set(sr_data, folder: str):
    """The SR training set with data.cache: disk (the shipped cascade_sr.yaml's): memory-mapped case files
    in a folder of its own (a test that counts the files it writes starts from none)."""
    cfg = dataclasses.replace(sr_data["cfg"], data=dataclasses.replace(sr_data["cfg"].data, cache="disk",
                                                                        cache_dir=str(sr_data["tmp"] / folder)))
    return build_datasets(cfg, sr_data["tmp"], train_random=train_window_steps(cfg, build_codec_for(cfg)))[0]


def test_disk_cache_maps_cases_and_gives_the_memory_cache_windows(sr_data, monkeypatch):
    """With data.cache: disk the windows are cut from memory-mapped case files (only their pages are
    read); the items are those of the memory cache, and a second pass reads the same files."""
    disk = _disk_set(sr_data, "disk")
    assert disk.mmap
    loads = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: loads.append(k.get("mmap")) or real_load(*a, **k))
    memory, disk = SeededItems(sr_data["train"]), SeededItems(disk)
    keys = [(0, 11), (1, 12), (2, 13), (3, 14)]
    for key in keys + keys:  # the first pass writes the files, the second maps them
        a, b = memory[key], disk[key]
        assert a[WINDOW_ORIGIN] == b[WINDOW_ORIGIN] and a[PATCH_ORIGIN] == b[PATCH_ORIGIN]
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["label"], b["label"])
    assert loads == [True] * 4


@pytest.mark.parametrize("workers,cache", [(0, "memory"), (2, "memory"), (2, "disk")])
def test_windows_cut_on_the_device_are_the_loaders_windows(sr_data, workers, cache):
    # train.data_on_device: whole cases held once, each batch's windows (and flips: flip_prob 0.5) cut
    # there from the item's seeded draw; the loop's two paths, four epochs from a mid-epoch position;
    # from the memory cache and from the disk cache cascade_sr.yaml ships (its auto holds the set on a GPU)
    train = sr_data["train"] if cache == "memory" else _disk_set(sr_data, "disk_held")
    assert random_steps(train) == ["RandSRWindowd"]
    held = loop._loader(_run(2, True, epoch=1, position=1), train, collate_cases, workers)
    assert isinstance(held, DeviceBatches) and isinstance(held.replay, DeviceWindow)
    plain = iter(loop._loader(_run(2, False, epoch=1, position=1), train, collate_cases, workers))
    flipped = set()
    for a, b in zip(iter(held), [next(plain) for _ in range(8)]):  # 2 batches an epoch
        assert a.keys() == b.keys() and a["case_id"] == b["case_id"]
        assert a[WINDOW_ORIGIN] == b[WINDOW_ORIGIN] and a[PATCH_ORIGIN] == b[PATCH_ORIGIN]
        assert a["label"].dtype == b["label"].dtype and a["image"].dtype == b["image"].dtype
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["label"], b["label"])
        flipped |= {held.replay.step._flip}
    assert flipped == {True, False}
    # the held items are the whole, unflipped cases, and the windows never wrote into them
    ids = [item["case_id"][0] for item in held.items]
    with whole_cases(train):
        for item, case_id in zip(held.items, ids):
            case = collate_cases([train[[x["case_id"] for x in train.data].index(case_id)]])
            assert PATCH_ORIGIN not in item and tuple(item["image"].shape[2:]) == (32, 32, 32)
            assert torch.equal(item["image"], case["image"]) and torch.equal(item["label"], case["label"])


def test_a_held_case_on_another_grid_is_refused_as_the_loader_refuses_it(sr_data):
    from medidiff.training.device_data import DeviceWindow

    replay = DeviceWindow(sr_data["train"])
    with pytest.raises(ValueError, match=r"grid \(32, 32, 30\).*\(32, 32, 32\)"):
        replay.item({"image": torch.zeros(1, 4, 32, 32, 30), "case_id": ["c"]}, 5)
