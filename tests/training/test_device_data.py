"""train.data_on_device: the loop's batches from items held on the device are the loader's batches,
so the loss curve and an exact resume are unchanged; pipelines with random steps are refused."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch.utils.data import default_collate

from medidiff.config import ConfigError
from medidiff.data.dataset import collate_cases, make_dataset
from medidiff.training import loop
from medidiff.training.device_data import DeviceBatches, _room_problem, concat_batches, random_steps
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


def test_a_pipeline_with_random_steps_is_refused_before_any_run_folder_exists(tmp_path):
    with pytest.raises(ConfigError, match=r"RandFlipd.*set data\.flip_prob: 0"):
        _fit(tmp_path, "flip", 2, on_device=True, data=toy_train.ToyData(flip=True))
    assert not (tmp_path / "flip").exists()


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


def test_the_loops_two_paths_give_the_same_batches_of_a_cached_manifest_pipeline(tmp_path):
    # the anatomy recipe's kind of data set: memory cache, region masks, no flips; from a mid-epoch position
    items = [write_case(tmp_path, f"c{i}", seed=i) for i in range(5)]
    ds = make_dataset(items, cfg_(cache="memory", flip_prob=0.0, label_mode="regions"))
    assert random_steps(ds) == []
    assert random_steps(make_dataset(items, cfg_(cache="memory", flip_prob=0.5))) == ["RandFlipd"]
    held = loop._loader(_run(2, True, epoch=1, position=1), ds, collate_cases, 0)
    assert isinstance(held, DeviceBatches)
    plain = iter(loop._loader(_run(2, False, epoch=1, position=1), ds, collate_cases, 0))
    for a, b in zip(iter(held), [next(plain) for _ in range(5)]):  # 2 batches an epoch: three epochs' worth
        assert a["case_id"] == b["case_id"]
        assert a["label"].dtype == torch.uint8
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["label"], b["label"])
