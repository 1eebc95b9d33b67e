"""objective.background_weight / edge_weight: training weighs the latent positions whose whole block is
background in every modality, or those around the boundary between background and the rest, found from the
images themselves (labels and tolerance aside), or refuses to run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from medidiff.config import ConfigError, load_config
from medidiff.training.diffusion import (
    BACKGROUND_TOLERANCE,
    DiffusionLoss,
    background_blocks,
    build_codec_for,
    edge_blocks,
    tumour_blocks,
)

REPO = Path(__file__).resolve().parents[2]


def test_a_block_is_background_only_when_every_voxel_of_every_modality_is():
    images = -torch.ones(1, 2, 4, 4, 4)
    images[0, 1, 0, 0, 0] = -0.9  # one voxel of one modality inside the head
    images[0, 0, 3, 3, 3] = -1.0 + BACKGROUND_TOLERANCE / 2  # float rounding of a stored 0 stays background
    blocks = background_blocks(images, (2, 2, 2))
    assert blocks.shape == (1, 1, 2, 2, 2)
    expected = torch.ones(2, 2, 2)
    expected[0, 0, 0] = 0.0
    assert torch.equal(blocks[0, 0], expected)


def test_the_edge_band_is_the_mixed_blocks_and_their_neighbours():
    images = -torch.ones(1, 2, 32, 32, 32)
    images[0, 0, 5:27, 5:27, 5:27] = 0.2  # a cube whose faces cut through the 2x2x2 blocks 2 and 13
    images[0, 1, 0, 0, 0] = -1.0 + BACKGROUND_TOLERANCE / 2  # rounding of a stored 0: still background
    edge = edge_blocks(images, (2, 2, 2))[0, 0]
    assert edge.shape == (16, 16, 16) and set(edge.unique().tolist()) == {0.0, 1.0}
    mixed = torch.zeros(16, 16, 16, dtype=torch.bool)
    mixed[2:14, 2:14, 2:14] = True  # blocks 2..13 hold cube voxels ...
    mixed[3:13, 3:13, 3:13] = False  # ... blocks 3..12 only cube voxels: not mixed
    band = torch.nn.functional.max_pool3d(mixed[None, None].float(), 3, 1, 1)[0, 0].bool()
    assert torch.equal(edge.bool(), band)
    # one block out on either side of the mixed shell, no further: the cube's core and the far corner stay out
    assert edge[1, 1, 1] and edge[3, 8, 8] and not edge[4:12, 4:12, 4:12].any() and not edge[0, 0, 0]
    # a boundary along block faces (no block holds both): the blocks on either side of it
    images = -torch.ones(1, 1, 32, 32, 32)
    images[0, 0, 4:28, 4:28, 4:28] = 0.2  # blocks 2..13, whole
    edge = edge_blocks(images, (2, 2, 2))[0, 0]
    assert edge[1, 8, 8] and edge[2, 8, 8] and not edge[0, 8, 8] and not edge[3, 8, 8] and not edge[3:13, 3:13, 3:13].any()
    # pixel space (factor 1): the voxels touching the boundary, on both sides
    edge = edge_blocks(images, (1, 1, 1))[0, 0]
    assert edge[3, 16, 16] and edge[4, 16, 16] and not edge[2, 16, 16] and not edge[5, 16, 16]
    # a volume all background, or all brain, has no edge
    assert edge_blocks(-torch.ones(1, 1, 8, 8, 8), (2, 2, 2)).sum() == 0
    assert edge_blocks(torch.zeros(1, 1, 8, 8, 8), (2, 2, 2)).sum() == 0


class _Spy:
    """An objective that records what the loss function hands it."""

    def __init__(self, channels: int) -> None:
        self.channels, self.seen = channels, {}

    def loss(self, net, z, cond, **kwargs):
        self.seen = {"z": z, **kwargs}
        return z.sum() * 0, torch.zeros(self.channels)


def _spied(weight: str, batch: dict) -> tuple[_Spy, object]:
    """What the loss function hands the objective for ``batch`` with ``objective.<weight>`` set, and the codec."""
    return _spied_with([weight, "data.modalities=[t1n, t2f]"], batch)


def test_the_loss_function_hands_the_objective_the_images_background_blocks():
    cfg = load_config(None, ["objective.background_weight=5", "data.modalities=[t1n, t2f]"])
    codec = build_codec_for(cfg)
    spy = _Spy(codec.latent_channels)
    image = -torch.ones(2, 2, 8, 8, 8)
    image[:, :, 2:6, 2:6, 2:6] = 0.3  # a head in the middle
    DiffusionLoss(cfg, codec, spy)(None, {"image": image}, torch.Generator().manual_seed(0))
    background = spy.seen["background"]
    assert background.shape == (2, 1, *spy.seen["z"].shape[2:])
    assert torch.equal(background, background_blocks(image, codec.downsampling_factor))
    assert background[:, :, 1:3, 1:3, 1:3].sum() == 0 and background.sum() == 2 * (64 - 8)
    off = load_config(None, ["data.modalities=[t1n, t2f]"])  # weight 1: no map is made
    spy_off = _Spy(codec.latent_channels)
    DiffusionLoss(off, codec, spy_off)(None, {"image": image}, torch.Generator().manual_seed(0))
    assert spy_off.seen["background"] is None


def test_the_loss_function_hands_the_objective_the_edge_band_only_when_weighted():
    image = -torch.ones(2, 2, 8, 8, 8)
    image[:, :, 3:6, 3:6, 3:6] = 0.3
    spy, codec = _spied("objective.edge_weight=4", {"image": image})
    assert spy.seen["background"] is None  # background_weight 1: no background map
    assert torch.equal(spy.seen["edge"], edge_blocks(image, codec.downsampling_factor))
    assert spy.seen["edge"].shape == (2, 1, *spy.seen["z"].shape[2:]) and spy.seen["edge"].sum() > 0


def test_the_tumour_blocks_are_the_wt_blocks_and_their_neighbours_read_from_the_first_label_channel():
    labels = torch.zeros(1, 3, 16, 16, 16)
    labels[0, 0, 6:8, 6:8, 6:8] = 1.0  # WT: exactly block 3 (factor 2)
    labels[0, 2, 0:2, 0:2, 0:2] = 1.0  # an ET voxel far away in the third channel: not WT, not read
    blocks = tumour_blocks(labels, (2, 2, 2))[0, 0]
    assert blocks.shape == (8, 8, 8) and blocks.sum() == 27  # block 3 and its 26 neighbours
    assert blocks[2:5, 2:5, 2:5].all() and not blocks[0, 0, 0] and not blocks[5, 3, 3]
    assert tumour_blocks(torch.zeros(1, 3, 8, 8, 8), (2, 2, 2)).sum() == 0  # tumour-free: no weight anywhere


def test_the_loss_function_hands_the_objective_the_tumour_blocks_only_when_weighted_and_labelled():
    from medidiff.errors import MedidiffError
    from medidiff.objectives import build_objective

    image = -torch.ones(2, 2, 8, 8, 8)
    image[:, :, 2:6, 2:6, 2:6] = 0.3
    label = torch.zeros(2, 3, 8, 8, 8)
    label[0, 0, 3:5, 3:5, 3:5] = 1.0  # case 0 has a tumour, case 1 none
    spy, codec = _spied("objective.tumour_weight=3", {"image": image, "label": label})
    assert spy.seen["background"] is None and spy.seen["edge"] is None
    assert torch.equal(spy.seen["tumour"], tumour_blocks(label, codec.downsampling_factor))
    assert spy.seen["tumour"][0].sum() > 0 and spy.seen["tumour"][1].sum() == 0
    # unlabelled cases: refused by the objective, not trained unweighted
    cfg = load_config(None, ["objective.tumour_weight=3", "data.modalities=[t1n, t2f]"])
    real = DiffusionLoss(cfg, codec, build_objective(cfg.objective))
    net = lambda x, t, **c: x  # noqa: E731
    with pytest.raises(MedidiffError, match="tumour_weight"):
        real(net, {"image": image}, torch.Generator().manual_seed(0))


@pytest.mark.parametrize("key", ["background_weight", "edge_weight", "tumour_weight"])
def test_spatial_weights_are_refused_at_config_load_where_no_images_are_seen(tmp_path, key):
    # before any run folder is claimed: a latent cache holds no images, and the SR and VAE stages do not weigh by it
    cached = [f"objective.{key}=5", "latent.type=pretrained", f"latent.path={tmp_path / 'vae'}",
              f"latent.cache={tmp_path / 'cache'}"]
    with pytest.raises(ConfigError, match=f"{key}.*latent.cache"):
        load_config(None, cached)
    with pytest.raises(ConfigError, match=f"{key}.*stage 'sr'"):
        load_config(REPO / "configs" / "cascade_sr.yaml", [f"objective.{key}=5"])
    assert getattr(load_config(REPO / "configs" / "anatomy_2mm.yaml", [f"objective.{key}=5"]).objective, key) == 5



def test_the_input_tumour_map_is_the_label_map_at_no_noise_and_reads_only_the_noisy_input():
    """objective.tumour_map input: the weight map is a function of x_t alone (so the loss's optimum stays
    E[x0 | x_t]); at no noise it is the whole-block WT map and its neighbours; it scales with the path's signal
    coefficient; the step hands the objective this function; without a generated WT mask it is refused."""
    from medidiff.errors import MedidiffError
    from medidiff.training.diffusion import input_tumour_blocks, model_input

    sets = ["objective.tumour_weight=3", "objective.tumour_map=input", "data.modalities=[t1n, t2f]"]
    cfg = load_config(None, [*sets, "conditioning.generate_labels=true", "data.label_mode=regions"])
    codec = build_codec_for(cfg)
    image = -torch.ones(2, 2, 16, 16, 16)
    image[:, :, 2:14, 2:14, 2:14] = 0.3
    label = torch.zeros(2, 3, 16, 16, 16)
    label[0, 0, 6:8, 6:8, 6:8] = 1.0  # case 0: WT fills block 3 exactly; case 1 none
    label[0, 0, 12, 12, 12] = 1.0  # and one voxel of block 6 (an eighth of it: below the midpoint)
    x, _ = model_input({"image": image, "label": label}, cfg)
    z = codec.encode(x)
    blocks = input_tumour_blocks(codec, codec.channel_names, z)
    one = torch.ones(2)
    inside = (torch.nn.functional.avg_pool3d(label[:, :1], 2) > 0.5).float()  # blocks more than half WT
    assert torch.equal(blocks(z, one), torch.nn.functional.max_pool3d(inside, 3, 1, 1))
    assert blocks(z, one)[0].sum() == 27 and blocks(z, one)[1].sum() == 0
    assert torch.equal(blocks(0.5 * z, 0.5 * one), blocks(z, one))  # x_t = a x0: the same map
    # with the background shifted to 0 the midpoint is not 0, so the signal coefficient must scale it
    shifted = load_config(None, [*sets, "conditioning.generate_labels=true", "data.label_mode=regions",
                                 "latent.zero_background=true", "latent.fit_stats=false"])
    codec0 = build_codec_for(shifted)
    z0 = codec0.encode(model_input({"image": image, "label": label}, shifted)[0])
    blocks0 = input_tumour_blocks(codec0, codec0.channel_names, z0)
    for a in (1.0, 0.3, 0.01):
        assert torch.equal(blocks0(a * z0, a * one), blocks(z, one)), a
    # the label map counts the lone voxel's block; the input map sees a block an eighth inside as outside
    assert tumour_blocks(label, codec.downsampling_factor)[0].sum() > 27
    spy, _ = _spied_with([*sets, "conditioning.generate_labels=true", "data.label_mode=regions"], {"image": image, "label": label})
    assert callable(spy.seen["tumour"])
    # the images alone in the latent: no WT band to read; refused at config load, before a run folder is claimed
    with pytest.raises(ConfigError, match="tumour_map"):
        load_config(None, sets)
    without = build_codec_for(load_config(None, sets[:1] + sets[2:]))
    with pytest.raises(MedidiffError, match="tumour_map"):
        input_tumour_blocks(without, without.channel_names, z)


def _spied_with(sets: list[str], batch: dict) -> tuple[_Spy, object]:
    cfg = load_config(None, sets)
    codec = build_codec_for(cfg)
    spy = _Spy(codec.latent_channels)
    DiffusionLoss(cfg, codec, spy)(None, batch, torch.Generator().manual_seed(0))
    return spy, codec


def test_the_tumour_weight_on_the_images_alone_leaves_the_masks_channels_unweighted():
    """objective.tumour_weight_channels images: the map handed to the objective is (B, C, ...), the tumour blocks on
    every image channel and 0 on the generated masks' channels (label map and input map alike), and the masks'
    channels then weigh as without the weight."""
    from medidiff.training.diffusion import input_tumour_blocks, model_input
    from medidiff.utils.tensor import regression_loss

    sets = ["objective.tumour_weight=3", "data.modalities=[t1n, t2f]", "conditioning.generate_labels=true",
            "data.label_mode=regions"]
    image = -torch.ones(2, 2, 16, 16, 16)
    image[:, :, 2:14, 2:14, 2:14] = 0.3
    label = torch.zeros(2, 3, 16, 16, 16)
    label[0, 0, 6:8, 6:8, 6:8] = 1.0
    batch = {"image": image, "label": label}
    spy, codec = _spied_with([*sets, "objective.tumour_weight_channels=images"], batch)
    names = codec.channel_names
    is_image = torch.tensor([n.partition(":")[2] in ("t1n", "t2f") for n in names])
    tumour = spy.seen["tumour"]
    assert tumour.shape == (2, len(names), 8, 8, 8) and 0 < int(is_image.sum()) < len(names)
    blocks = tumour_blocks(label, codec.downsampling_factor)
    assert torch.equal(tumour[:, is_image], blocks.expand(-1, int(is_image.sum()), -1, -1, -1))
    assert tumour[:, ~is_image].sum() == 0
    # the input map, restricted the same way
    spy, _ = _spied_with([*sets, "objective.tumour_map=input", "objective.tumour_weight_channels=images"], batch)
    cfg = load_config(None, sets)
    z = codec.encode(model_input(batch, cfg)[0])
    full = input_tumour_blocks(codec, names, z)(z, torch.ones(2))
    restricted = spy.seen["tumour"](z, torch.ones(2))
    assert torch.equal(restricted[:, is_image], full.expand(-1, int(is_image.sum()), -1, -1, -1))
    assert restricted[:, ~is_image].sum() == 0
    # a channel whose map is 0 weighs 1 after the per-case, per-channel normalisation: its loss is unweighted
    pred, target = torch.randn(2, len(names), 8, 8, 8), torch.randn(2, len(names), 8, 8, 8)
    _, weighted = regression_loss(pred, target, spatial_weight=1 + 2 * tumour)
    _, plain = regression_loss(pred, target)
    assert torch.allclose(weighted[~is_image], plain[~is_image])
    assert not torch.allclose(weighted[is_image], plain[is_image])
    with pytest.raises(ConfigError, match="tumour_weight_channels"):
        load_config(None, ["objective.tumour_weight_channels=images", "objective.tumour_weight=3",
                           "latent.type=pretrained", "latent.path=/nonexistent"])
