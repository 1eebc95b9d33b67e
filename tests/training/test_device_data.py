"""train.data_on_device: the loop's batches from items held on the device are the loader's batches,
so the loss curve and an exact resume are unchanged; pipelines with random steps are refused."""

from __future__ import annotations

import pickle
from types import SimpleNamespace

import pytest
import torch
from torch.utils.data import default_collate

from medidiff.config import ConfigError
from medidiff.data.dataset import collate_cases, make_dataset
from medidiff.training import loop
from medidiff.training.device_data import (DeviceBatches, DeviceFlip, NotHeld, _room_problem, concat_batches,
                                           random_steps)
from medidiff.training.sampler import SeededItems, derive_seed
from tests.data.test_transforms import cfg_, write_case
from tests.training import toy_train


def _fit(tmp_path, name, steps, *, on_device, resume=False, workers=0, data=None):
    # a constant rate: a cosine schedule's rates depend on max_steps, which the first part of a resumed run changes
    cfg = toy_train.config("none", steps, ckpt_every=3, data_on_device=on_device, lr_schedule="constant")
    torch.manual_seed(0)  # the same initial weights in every run
    return toy_train.fit(toy_train.ToyNet(), toy_train.make_loss(), data or toy_train.ToyData(flip=False), cfg,
                         run_dir=tmp_path / name, seed=7, resume=resume, progress=False, num_workers=workers)


def test_items_on_the_device_give_the_loaders_loss_curve_and_resume_exactly(tmp_path):
    # 12 items, 2 per micro-batch, 2 micro-batches a step: 3 steps an epoch. The resume after step 2
    # starts mid-epoch (batch 4 of 6), and 7 steps cross two epoch boundaries
    loader = _fit(tmp_path, "loader", 7, on_device=False)
    first = _fit(tmp_path, "device", 2, on_device=True, workers=2)  # items loaded through 2 workers
    rest = _fit(tmp_path, "device", 7, on_device=True, resume=True)
    assert len(loader.losses) == 7
    assert first.losses + rest.losses == loader.losses  # bit for bit
    # the same batches either way, so a run may resume with the setting switched, either way round
    assert _fit(tmp_path, "device", 9, on_device=False, resume=True).losses == \
        _fit(tmp_path, "loader", 9, on_device=True, resume=True).losses


def test_left_right_flips_are_applied_on_the_device_as_the_loader_draws_them(tmp_path):
    # ToyData flips with probability 0.5 from the item seeds: the device path loads items unflipped and
    # flips the ones the loader would, epoch after epoch (7 steps, 3 an epoch), through a resume
    data = lambda: toy_train.ToyData(flip=True)  # noqa: E731
    loader = _fit(tmp_path, "loader", 7, on_device=False, data=data())
    first = _fit(tmp_path, "device", 2, on_device=True, workers=2, data=data())
    rest = _fit(tmp_path, "device", 7, on_device=True, resume=True, data=data())
    assert first.losses + rest.losses == loader.losses  # bit for bit
    flip = DeviceFlip(data())
    decisions = {flip.flips(derive_seed(7, epoch, i)) for epoch in range(3) for i in range(12)}
    assert decisions == {True, False}, "the seeds flip some items and not others"


class _NoisyData(toy_train.ToyData):
    def __init__(self) -> None:
        from monai.transforms import Compose, RandFlipd, RandGaussianNoised

        super().__init__(flip=False)
        self.transform = Compose([RandFlipd("image", prob=0.5, spatial_axis=0), RandGaussianNoised("image", prob=1.0)])


def test_a_pipeline_with_other_random_steps_is_refused_before_any_run_folder_exists(tmp_path):
    with pytest.raises(ConfigError, match=r"random steps every epoch \(RandGaussianNoised\)"):
        _fit(tmp_path, "noise", 2, on_device=True, data=_NoisyData())
    assert not (tmp_path / "noise").exists()


def test_no_room_on_the_gpu_is_refused_with_the_sizes(monkeypatch):
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (2 * 2**30, 80 * 2**30))
    assert _room_problem(2**30, torch.device("cuda")) is None  # half of the free memory fits
    assert "needs 1.5 GiB on cuda, more than half of its 2.0 GiB free" in _room_problem(3 * 2**29, torch.device("cuda"))
    assert _room_problem(10**15, torch.device("cpu")) is None


def test_a_collate_function_whose_batches_are_not_joined_items_is_refused(tmp_path):
    def mean_of_items(items):  # a batch that is not the items side by side
        return {"image": torch.stack([it["image"] for it in items]).mean(0, keepdim=True)}

    run = _run(2, True)
    with pytest.raises(ConfigError, match="does not batch items as joined batches of one"):
        loop._loader(run, toy_train.ToyData(flip=False), mean_of_items, 0)


class _NoPipeline(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 2

    def __getitem__(self, i: int) -> dict:
        return {"image": torch.zeros(1, 2, 2, 2)}


def test_a_dataset_that_cannot_say_whether_it_is_random_is_refused():
    with pytest.raises(ConfigError, match="cannot tell"):
        random_steps(_NoPipeline())
    declared = _NoPipeline()
    declared.random_items = False  # as LatentCacheDataset declares
    assert random_steps(declared) == []


@pytest.mark.parametrize("collate", [collate_cases, default_collate])
def test_joined_batches_of_one_equal_the_collated_batch(collate):
    items = [{"image": torch.randn(2, 3, 3, 3), "label": torch.randint(0, 2, (3, 3, 3, 3), dtype=torch.uint8),
              "case_id": f"c{i}", "fold": i % 2, "patch_origin": (i, 0, 1)} for i in range(3)]
    whole, joined = collate(items), concat_batches([collate([it]) for it in items])
    assert whole.keys() == joined.keys()
    for key in whole:
        if isinstance(whole[key], torch.Tensor):
            assert joined[key].dtype == whole[key].dtype and torch.equal(joined[key], whole[key]), key
        else:
            assert type(joined[key]) is type(whole[key]) and len(joined[key]) == len(whole[key]), key
            for a, b in zip(joined[key], whole[key]):
                assert torch.equal(a, b) if isinstance(b, torch.Tensor) else a == b, key


def _run(micro_batch: int, on_device: bool, epoch: int = 0, position: int = 0) -> SimpleNamespace:
    return SimpleNamespace(seed=5, dist=SimpleNamespace(rank=0, world_size=1), epoch=epoch, position=position,
                           cfg=SimpleNamespace(micro_batch=micro_batch, data_on_device=on_device),
                           device=torch.device("cpu"))


@pytest.mark.parametrize("flip_prob", [0.0, 0.5])
def test_the_loops_two_paths_give_the_same_batches_of_a_cached_manifest_pipeline(tmp_path, flip_prob):
    # the anatomy recipe's kind of data set: memory cache, region masks, with and without left-right
    # flips (images and masks together); from a mid-epoch position
    items = [write_case(tmp_path, f"c{i}", seed=i) for i in range(5)]
    ds = make_dataset(items, cfg_(cache="memory", flip_prob=flip_prob, label_mode="regions"))
    assert random_steps(ds) == ([] if flip_prob == 0 else ["RandFlipd"])
    held = loop._loader(_run(2, True, epoch=1, position=1), ds, collate_cases, 0)
    assert isinstance(held, DeviceBatches) and (held.replay is None) == (flip_prob == 0)
    plain = iter(loop._loader(_run(2, False, epoch=1, position=1), ds, collate_cases, 0))
    ids = [it["case_id"][0] for it in held.items]
    kinds = set()  # whether each item of each batch is its held item as it is (not flipped)
    for a, b in zip(iter(held), [next(plain) for _ in range(8)]):  # 2 batches an epoch: four epochs' worth
        assert a["case_id"] == b["case_id"]
        assert a["label"].dtype == torch.uint8
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["label"], b["label"])
        kinds |= {torch.equal(a["image"][j], held.items[ids.index(c)]["image"][0]) for j, c in enumerate(a["case_id"])}
    assert kinds == ({True, False} if flip_prob else {True})
    # the held items themselves are the unflipped cases
    unflipped = make_dataset(items, cfg_(cache="memory", flip_prob=0.0, label_mode="regions"))
    for it, case_id in zip(held.items, ids):
        k = [x["case_id"] for x in items].index(case_id)
        assert torch.equal(it["image"][0], collate_cases([unflipped[k]])["image"][0])


def test_the_loop_does_not_call_waits_for_items_held_on_the_device_loader_bound(tmp_path, monkeypatch):
    warns = []

    class Spy(loop.DataWait):
        def __init__(self, it, **kwargs):
            warns.append(kwargs.get("warn", True))
            super().__init__(it, **kwargs)

    monkeypatch.setattr(loop, "DataWait", Spy)
    _fit(tmp_path, "held", 2, on_device=True)
    _fit(tmp_path, "loaded", 2, on_device=False)
    assert warns == [False, True]


def test_auto_holds_the_set_only_on_a_gpu_and_falls_back_to_the_loader_saying_why(monkeypatch, caplog):
    data = toy_train.ToyData(flip=False)

    def run(setting, device):
        r = _run(2, setting)
        r.device = torch.device(device)
        return r

    # on a CPU, auto is the loader: no second copy of the items in the same memory
    assert isinstance(loop._loader(run("auto", "cpu"), data, None, 0), torch.utils.data.DataLoader)
    assert isinstance(loop._loader(run(True, "cpu"), data, None, 0), DeviceBatches)

    def no_room(*args, **kwargs):
        raise NotHeld("the training set needs 9.0 GiB, cuda:0 has 1.0 GiB free")

    monkeypatch.setattr(loop, "DeviceBatches", no_room)  # as on a GPU without room (no GPU here)
    with caplog.at_level("WARNING", logger="medidiff.training.loop"):
        assert isinstance(loop._loader(run("auto", "cuda"), data, None, 0), torch.utils.data.DataLoader)
    assert "auto: the loader feeds this run (the training set needs 9.0 GiB cuda:0 has 1.0 GiB free)" in caplog.text.replace(",", "")
    assert "set train.data_on_device: false" not in caplog.text  # the reason alone: auto already chose the loader
    # what true stops with: the reason and the way out
    assert str(NotHeld("no room")) == "train.data_on_device: no room; set train.data_on_device: false"
    # a raise in a worker or spawned rank reaches the parent pickled: the same reason and message
    back = pickle.loads(pickle.dumps(NotHeld("no room", alternatives=True)))
    assert isinstance(back, NotHeld) and back.reason == "no room" and str(back) == str(NotHeld("no room", alternatives=True))
    with pytest.raises(ConfigError, match="9.0 GiB"):  # true means held, or a clear refusal
        loop._loader(run(True, "cuda"), data, None, 0)


def test_data_on_device_takes_true_false_or_auto():
    from medidiff.config import from_dict
    from medidiff.training.config import TrainConfig

    assert [from_dict(TrainConfig, {"data_on_device": v}).data_on_device for v in (True, False, "auto")] == [True, False, "auto"]
    with pytest.raises(ConfigError, match="data_on_device"):
        from_dict(TrainConfig, {"data_on_device": "sometimes"})
    with pytest.raises(ValueError, match="true, false or auto"):  # built in code, where 1 would pass for True
        TrainConfig(data_on_device=1)


def test_every_rank_refuses_together_when_one_runs_out_of_memory_while_loading(monkeypatch):
    # the first item's size foresaw room, a later item did not fit on this rank: the agreement after
    # loading makes the refusal common, and auto's fallback with it
    calls = []
    moved = []

    def move(batch):
        if len(moved) == 3:
            raise torch.OutOfMemoryError("CUDA out of memory")
        moved.append(batch)
        return batch

    data = toy_train.ToyData(flip=False)
    keys = [(i, i) for i in range(len(data))]
    load = lambda order, size: torch.utils.data.DataLoader(SeededItems(data), batch_size=size, sampler=order)  # noqa: E731
    with pytest.raises(ConfigError, match="this rank's GPU ran out of memory"):
        DeviceBatches(data, keys, 2, load=load, move=move, device=torch.device("cpu"), item_seed=lambda i: i,
                      agree=lambda flag: calls.append(flag) or flag)
    assert calls == [False, True]  # the room check after the first item, then the agreement after loading


def test_a_batch_field_that_cannot_be_joined_is_a_config_error_so_auto_can_fall_back():
    class Odd(toy_train.ToyData):
        def __getitem__(self, i):
            return {**super().__getitem__(i), "meta": object()}

    data = Odd(flip=False)
    keys = [(i, i) for i in range(len(data))]
    def collate(items):  # a host field that is one object, not a list per item
        return {"image": torch.stack([it["image"] for it in items]), "meta": items[0]["meta"]}

    load = lambda order, size: torch.utils.data.DataLoader(SeededItems(data), batch_size=size, sampler=order,  # noqa: E731
                                                           collate_fn=collate)
    with pytest.raises(ConfigError, match="cannot join"):
        DeviceBatches(data, keys, 2, load=load, move=lambda b: b, device=torch.device("cpu"), item_seed=lambda i: i)
