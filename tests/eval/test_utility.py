"""Mask fidelity's split by tumour presence: what the mean over all cases mixes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medidiff.eval.utility import dice_by_tumour_presence


def test_fidelity_dice_is_split_by_tumour_presence():
    """A tumour-free case scores 0 on any false voxel: the split shows what the mean over all mixes."""
    labels = torch.zeros(4, 3, 4, 4, 4, dtype=torch.bool)
    labels[:2, :, 1:3, 1:3, 1:3] = True  # cases 0 and 1 carry a tumour
    dice = np.array([[[0.9, 0.8, 0.7], [0.7, 0.6, 0.5], [0.0, 1.0, 1.0], [1.0, 1.0, 1.0]]])  # (S=1, N=4, R=3)
    split = dice_by_tumour_presence(dice, labels)
    assert split["with_tumour"]["cases"] == 2 and split["tumour_free"]["cases"] == 2
    assert split["with_tumour"]["dice_mean"]["WT"] == pytest.approx(0.8)
    assert split["tumour_free"]["dice_mean"] == {"WT": 0.5, "TC": 1.0, "ET": 1.0}  # one false WT of two
