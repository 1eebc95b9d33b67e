"""Mask fidelity's split by tumour presence: what the mean over all cases mixes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medidiff.eval.utility import dice_by_tumour_presence, fidelity_ratios


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


def _fidelity_side(dice: np.ndarray, labels: np.ndarray) -> dict:
    """mask_fidelity's reading of one side (synthetic or real held-out) from per-case Dice (S, N, R)."""
    mean = dice.mean(axis=(0, 1))
    return {"aggregate": {r: {"dice_mean": float(mean[k])} for k, r in enumerate(("WT", "TC", "ET"))},
            "by_tumour_presence": dice_by_tumour_presence(dice, labels)}


def _cases(n_tumour: int, n_free: int) -> np.ndarray:
    labels = np.zeros((n_tumour + n_free, 3, 4, 4, 4), bool)
    labels[:n_tumour, :, 1:3, 1:3, 1:3] = True
    return labels


def test_fidelity_ratio_reads_the_tumours_not_the_share_of_tumour_free_cases():
    """The segmenter of the 2026-12-02 runs finds a false WT voxel in every tumour-free case (Dice 0
    there, real or synthetic). Over all cases, the ratio then rewards a generator for putting a tumour
    in every case and punishes one with more tumour-free cases than real, however well its images show
    their tumours; the goal's ratio compares the cases with a tumour, and still fails images whose
    labels are elsewhere (known bad: labels mirrored away from the tumour they drew)."""
    real_labels = _cases(30, 6)  # 17 % tumour-free, as the held-out fold
    real = _fidelity_side(np.where(real_labels.any((2, 3, 4)), 0.98, 0.0)[None], real_labels)

    def synthetic(n_tumour, n_free, dice_with):
        labels = _cases(n_tumour, n_free)
        return _fidelity_side(np.where(labels.any((2, 3, 4)), dice_with, 0.0)[None], labels)

    every_case = fidelity_ratios(synthetic(24, 0, 0.95), real)  # a tumour in every case, found as well as real
    assert every_case["dice_ratio_to_real_all_cases"]["WT"] > 1.1  # the old ratio: better than the real cases
    assert every_case["dice_ratio_to_real"]["WT"] == pytest.approx(0.95 / 0.98)
    many_free = fidelity_ratios(synthetic(16, 8, 0.97), real)  # twice the real tumour-free share
    assert many_free["dice_ratio_to_real_all_cases"]["WT"] < 0.85  # the old ratio failed it
    assert many_free["dice_ratio_to_real"]["WT"] >= 0.85
    mirrored = fidelity_ratios(synthetic(24, 0, 0.1), real)  # the labels miss the drawn tumour
    assert all(mirrored["dice_ratio_to_real"][r] < 0.85 for r in ("WT", "TC"))
    # no generated case with a region the real cases have: a fail, not "no verdict"
    none = fidelity_ratios(synthetic(0, 8, 0.0), real)
    assert none["dice_ratio_to_real"] == {"WT": 0.0, "TC": 0.0, "ET": 0.0}
    # no real case with it: no ratio (report.json's "nan" strings read too)
    assert all(np.isnan(v) for v in fidelity_ratios(real, synthetic(0, 8, 0.0))["dice_ratio_to_real"].values())
    real["by_tumour_presence"]["with_region"]["WT"]["dice_mean"] = "nan"
    assert np.isnan(fidelity_ratios(synthetic(8, 0, 0.9), real)["dice_ratio_to_real"]["WT"])
