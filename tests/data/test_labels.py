"""The one label-downsampling rule (medidiff.data.labels) against a brute-force count."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from medidiff.data.brats import REGIONS, regions_from_labels
from medidiff.data.labels import block_majority_labels, block_majority_regions


def _brute_force(label: np.ndarray, f: int) -> np.ndarray:
    out = np.zeros(tuple(s // f for s in label.shape), np.int64)
    for i, j, k in itertools.product(*map(range, out.shape)):
        block = label[i * f:(i + 1) * f, j * f:(j + 1) * f, k * f:(k + 1) * f].ravel()
        counts = np.bincount(block, minlength=4)
        out[i, j, k] = np.flatnonzero(counts == counts.max()).max()  # ties -> the higher label
    return out


@pytest.mark.parametrize("f", [2, 3])
def test_block_majority_labels_is_the_most_frequent_label_ties_to_the_higher(f):
    labels = torch.randint(0, 4, (2, 6, 6, 12), generator=torch.Generator().manual_seed(f))
    low = block_majority_labels(labels, f)
    assert low.shape == (2, 6 // f, 6 // f, 12 // f) and low.dtype == labels.dtype
    for b in range(2):
        np.testing.assert_array_equal(low[b].numpy(), _brute_force(labels[b].numpy(), f))
    assert torch.equal(block_majority_labels(labels, 1), labels)
    # a tumour label on half a block beats the background half
    half = torch.zeros(2, 2, 2, dtype=torch.long)
    half[0] = 3
    assert block_majority_labels(half, 2).item() == 3
    with pytest.raises(ValueError, match="not divisible"):
        block_majority_labels(labels, 4)


def test_block_majority_regions_are_the_regions_of_the_downsampled_labels():
    labels = torch.randint(0, 4, (3, 8, 8, 8), generator=torch.Generator().manual_seed(0))
    regions = torch.stack([torch.from_numpy(np.stack(list(regions_from_labels(lab.numpy()).values())))
                           for lab in labels]).float()  # (B, 3, *S) in {0, 1}
    low = block_majority_regions(regions, 2)
    expected = torch.stack([torch.isin(block_majority_labels(labels, 2), torch.tensor(v)) for v in REGIONS.values()],
                           dim=1)
    assert low.dtype == torch.bool and torch.equal(low, expected)
    assert torch.equal(block_majority_regions(regions * 2 - 1, 2), low)  # {-1, 1} masks too
    assert (low[:, 2] <= low[:, 1]).all() and (low[:, 1] <= low[:, 0]).all()  # ET in TC in WT
    with pytest.raises(ValueError, match="WT/TC/ET"):
        block_majority_regions(regions[:, :2], 2)


def test_known_label_count_gives_the_same_maps():
    """block_majority_regions passes num_labels=4 (its label map is built from 0-3) so the SR loop
    never reads the maximum back from the GPU: the maps must be those of the counted maximum."""
    labels = torch.randint(0, 4, (2, 8, 8, 8), generator=torch.Generator().manual_seed(1))
    assert torch.equal(block_majority_labels(labels, 2, num_labels=4), block_majority_labels(labels, 2))
    ones = torch.ones(1, 4, 4, 4, dtype=torch.long)
    assert torch.equal(block_majority_labels(ones, 2, num_labels=4), block_majority_labels(ones, 2))


@pytest.mark.gpu
def test_block_majority_regions_never_waits_for_the_host_on_cuda():
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    regions = (torch.rand(2, 3, 16, 16, 16, device="cuda") > 0.5).float()
    block_majority_regions(regions, 2)  # kernels loaded
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        block_majority_regions(regions, 2)
    finally:
        torch.cuda.set_sync_debug_mode("default")
