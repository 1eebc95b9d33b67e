"""Mask fidelity's split by tumour presence: what the mean over all cases mixes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medidiff.eval.utility import dice_by_tumour_presence


def test_fidelity_dice_is_split_by_tumour_presence():
    """A case without a region scores 0 on any false voxel of it: the split, per region, shows what
    the mean over all cases mixes."""
    labels = torch.zeros(4, 3, 4, 4, 4, dtype=torch.bool)
    labels[:2, 0, 1:3, 1:3, 1:3] = True  # cases 0 and 1 carry a tumour (WT) ...
    labels[0, 1:, 1:2, 1:2, 1:2] = True  # ... and only case 0 a core and enhancing part
    dice = np.array([[[0.9, 0.8, 0.7], [0.7, 0.0, 1.0], [0.0, 1.0, 1.0], [1.0, 1.0, 1.0]]])  # (S=1, N=4, R=3)
    split = dice_by_tumour_presence(dice, labels)
    assert split["with_region"]["WT"] == {"cases": 2, "dice_mean": pytest.approx(0.8)}
    assert split["without_region"]["WT"] == {"cases": 2, "dice_mean": 0.5}  # one false WT of two
    assert split["with_region"]["TC"] == {"cases": 1, "dice_mean": pytest.approx(0.8)}
    assert split["without_region"]["TC"] == {"cases": 3, "dice_mean": pytest.approx(2 / 3)}  # case 1: a false TC
    assert split["with_region"]["ET"]["cases"] == 1 and split["without_region"]["ET"]["dice_mean"] == 1.0
    assert dice_by_tumour_presence(dice, labels.numpy()) == split  # numpy labels too
