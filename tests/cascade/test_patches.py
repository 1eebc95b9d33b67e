"""Patch sampling for training and the patch-wise denoiser used for seamless whole-volume sampling."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from medidiff.cascade.patches import (
    blend_weight_sum,
    blend_window,
    crop_patches,
    patch_grid,
    patch_starts,
    patchwise_denoiser,
    random_patch_origins,
)
from medidiff.nets import build_net
from medidiff.nets.config import NetConfig
from medidiff.objectives import FlowMatchingObjective
from medidiff.samplers import sample_euler


def test_random_origins_are_a_function_of_the_generator_and_stay_inside():
    spatial, patch = (20, 24, 16), (8, 8, 8)
    draw = lambda seed: random_patch_origins(spatial, patch, batch=64, generator=torch.Generator().manual_seed(seed), align=2)
    a, b, c = draw(1), draw(1), draw(2)
    assert a == b and a != c
    for org in a:
        assert all(o % 2 == 0 and 0 <= o and o + p <= s for o, p, s in zip(org, patch, spatial))
    assert {org[0] for org in a} == set(range(0, 13, 2))  # every aligned origin is reachable


def test_crop_patches_takes_each_samples_own_crop():
    x = torch.arange(2 * 3 * 10 * 10 * 10, dtype=torch.float32).reshape(2, 3, 10, 10, 10)
    out = crop_patches(x, [(0, 2, 4), (6, 0, 1)], (4, 5, 6))
    assert out.shape == (2, 3, 4, 5, 6)
    assert torch.equal(out[1], x[1, :, 6:10, 0:5, 1:7])


@pytest.mark.parametrize("size,patch,overlap", [(32, 16, 0.25), (20, 8, 0.5), (17, 8, 0.0), (8, 8, 0.5), (5, 8, 0.5)])
def test_patch_starts_cover_the_axis_with_the_requested_overlap(size, patch, overlap):
    starts = patch_starts(size, patch, overlap)
    assert starts[0] == 0 and starts[-1] == max(0, size - patch)
    covered = set().union(*(range(s, s + patch) for s in starts))
    assert covered >= set(range(size))
    if len(starts) > 1:
        assert min(b - a for a, b in zip(starts, starts[1:])) >= 1
        assert max(a + patch - b for a, b in zip(starts, starts[1:])) >= int(overlap * patch) - 1


@pytest.mark.parametrize("kind", ["cosine", "gaussian"])
def test_blend_window_is_positive_symmetric_and_peaks_in_the_middle(kind):
    w = blend_window((8, 6, 10), kind)
    assert w.shape == (8, 6, 10) and (w > 0).all()
    assert torch.allclose(w, w.flip(0).flip(1).flip(2))
    assert w[4, 3, 5] == w.max() and w[0, 0, 0] < 0.05 * w.max()


def test_blended_assembly_is_normalised():
    """Weights over all patches sum to one at every voxel: a constant prediction stays that constant."""
    spatial, patch = (20, 12, 18), (8, 8, 8)
    origins = patch_grid(spatial, patch, 0.25)
    assert (blend_weight_sum(spatial, patch, origins, blend_window(patch)) > 0).all()
    const = lambda x, t, cond: torch.full_like(x, 0.7)
    out = patchwise_denoiser(const, patch, overlap=0.25)(torch.zeros(2, 3, *spatial), torch.ones(2), {})
    torch.testing.assert_close(out, torch.full_like(out, 0.7))


def test_patchwise_equals_whole_for_a_local_net():
    """A 1x1x1 conv (with conditioning image and per-sample scalars) is exactly patch-separable."""
    conv = torch.nn.Conv3d(5, 3, 1)

    def local(x, t, cond):
        return conv(torch.cat([x, cond["cond_image"]], 1)) * (1 + cond["scalars"][:, :, None, None, None]) + t[:, None, None, None, None]

    x, t = torch.randn(2, 3, 20, 24, 16), torch.tensor([0.3, 0.9])
    cond = {"cond_image": torch.randn(2, 2, 20, 24, 16), "scalars": torch.rand(2, 1)}
    with torch.no_grad():
        whole = local(x, t, cond)
        for window in ("cosine", "gaussian", "box"):
            patches = patchwise_denoiser(local, (8, 8, 8), overlap=0.25, window=window, batch_size=3)(x, t, cond)
            torch.testing.assert_close(patches, whole, atol=1e-5, rtol=1e-5)


def test_patchwise_approximates_whole_for_a_tiny_unet_and_improves_with_patch_size():
    """A UNet is not patch-separable (receptive field, GroupNorm statistics); the blended patch-wise
    prediction is close and approaches the whole-volume one as patches grow."""
    net = build_net(NetConfig(in_channels=2, out_channels=2, channels=(8, 16), num_res_blocks=1, norm_groups=4,
                              zero_init=False, time_scale=1.0)).eval()
    den = lambda x, t, cond: net(x, t)
    x, t = torch.randn(1, 2, 40, 40, 40), torch.full((1,), 500.0)
    with torch.no_grad():
        whole = den(x, t, {})
        err = {p: (patchwise_denoiser(den, (p,) * 3, overlap=0.5)(x, t, {}) - whole).abs().mean() for p in (16, 32)}
    signal = whole.abs().mean()
    assert err[32] < err[16] and err[32] < 0.15 * signal


def _seam_ratio(x: torch.Tensor, edges: list[int], axis: int) -> float:
    """Mean |finite difference| across the planes where patches meet, over its mean elsewhere."""
    g = x.diff(dim=axis).abs().mean(dim=[d for d in range(x.ndim) if d != axis])  # (S - 1,)
    away = torch.ones_like(g, dtype=torch.bool)
    for e in edges:
        away[max(0, e - 3):e + 2] = False
    return float(g[[e - 1 for e in edges]].mean() / g[away].mean())


def test_patchwise_sampling_has_no_seams():
    """Full-grid Euler sampling with a smooth, zero-padded (border-sensitive) denoiser: naive tiling
    leaves seams where patches meet; the blended patch-wise denoiser shows none (as the whole run)."""

    def blur(x, t, cond):
        return 0.9 * F.avg_pool3d(x, 5, stride=1, padding=2, count_include_pad=True)

    ts = FlowMatchingObjective().timesteps(8)
    x = torch.randn(1, 2, 32, 32, 32)
    whole = sample_euler(blur, x, ts)
    tiled = sample_euler(patchwise_denoiser(blur, (16,) * 3, overlap=0.0, window="box"), x, ts)
    blended = sample_euler(patchwise_denoiser(blur, (16,) * 3, overlap=0.5, window="cosine"), x, ts)
    for axis in (2, 3, 4):
        assert _seam_ratio(tiled, [16], axis) > 2.0  # the measure sees a seam where there is one
        for edges in ([16], [8, 24]):  # patch edges of the blended grid (starts 0, 8, 16)
            assert _seam_ratio(blended, edges, axis) < 1.1 * _seam_ratio(whole, edges, axis)
    assert (blended - whole).abs().mean() < 0.1 * (tiled - whole).abs().mean()


def test_bad_patch_inputs_are_clear_errors():
    with pytest.raises(ValueError, match="larger than the volume"):
        random_patch_origins((8, 8, 8), (16, 8, 8), batch=1, generator=None)
    with pytest.raises(ValueError, match="must live on the sampled grid"):
        patchwise_denoiser(lambda x, t, c: x, (4, 4, 4))(torch.zeros(1, 1, 8, 8, 8), torch.ones(1),
                                                         {"cond_image": torch.zeros(1, 1, 4, 4, 4)})
