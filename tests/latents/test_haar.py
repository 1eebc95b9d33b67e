"""Invariants of the fast 3D Haar transform: exact inverse, orthonormality, LLL = block sum,
agreement with ptwt, documented channel order, clear errors."""

from __future__ import annotations

import math

import pytest
import torch

from medidiff.latents.haar import (
    SUBBANDS,
    fast_dwt3,
    fast_idwt3,
    haar_dwt3,
    haar_idwt3,
    haar_matrix3,
    subband_names,
)

CPU_BACKENDS = ["eager", "matmul"]


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("levels", [1, 2, 3])
def test_exact_inverse_and_energy(levels: int, backend: str) -> None:
    x = torch.randn(2, 3, 16, 16, 24)
    z = fast_dwt3(x, levels, backend=backend)  # type: ignore[arg-type]
    f = 2**levels
    assert z.shape == (2, 3 * 8**levels, 16 // f, 16 // f, 24 // f)
    assert z.dtype == x.dtype
    x_rec = fast_idwt3(z, levels, backend=backend)  # type: ignore[arg-type]
    assert (x_rec - x).abs().max().item() < 1e-5
    # orthonormal: energy preserved (float64 sums to separate transform error from sum rounding)
    ex, ez = x.double().pow(2).sum().item(), z.double().pow(2).sum().item()
    assert ez == pytest.approx(ex, rel=1e-5)


@pytest.mark.parametrize("levels", [1, 2, 3])
def test_backends_agree(levels: int) -> None:
    x = torch.randn(1, 2, 16, 16, 16)
    ref = haar_dwt3(x, levels)
    assert torch.allclose(fast_dwt3(x, levels, backend="matmul"), ref, atol=1e-6)


@pytest.mark.parametrize("levels", [1, 2, 3])
def test_lll_is_block_sum(levels: int) -> None:
    C = 2
    x = torch.randn(1, C, 16, 16, 16, dtype=torch.float64)
    z = haar_dwt3(x, levels)
    f = 2**levels
    block_sum = torch.nn.functional.avg_pool3d(x, f) * f**3  # (1, C, 16/f, 16/f, 16/f)
    # channels [0, C) are LLL of LLL of ...: sum over (2^L)^3 voxels / sqrt(8)^L
    assert torch.allclose(z[:, :C], block_sum / math.sqrt(8.0) ** levels, atol=1e-12)


def test_matrix_is_orthonormal_kronecker() -> None:
    m = haar_matrix3(torch.float64)
    assert torch.allclose(m @ m.T, torch.eye(8, dtype=torch.float64), atol=1e-12)
    # row 0 (LLL) is all 1/sqrt(8); the sign pattern of row s is prod of (-1)^(b_axis * offset_axis)
    assert torch.allclose(m[0], torch.full((8,), 1 / math.sqrt(8.0), dtype=torch.float64))


def test_channel_order_single_impulses() -> None:
    """channel = s * C + c, s = 4 bD + 2 bH + bW, high-pass = (even - odd) / sqrt(2)."""
    C = 3
    for c in range(C):
        for i, j, l in [(0, 0, 0), (1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 1)]:
            x = torch.zeros(1, C, 2, 2, 2, dtype=torch.float64)
            x[0, c, i, j, l] = 1.0
            z = haar_dwt3(x, 1).view(8, C)  # (s, c) at the single output voxel
            assert torch.all(z[:, [k for k in range(C) if k != c]] == 0)
            for s in range(8):
                bD, bH, bW = (s >> 2) & 1, (s >> 1) & 1, s & 1
                sign = (-1) ** (bD * i + bH * j + bW * l)
                assert z[s, c].item() == pytest.approx(sign / math.sqrt(8.0))


def test_agrees_with_ptwt_level1() -> None:
    ptwt = pytest.importorskip("ptwt")
    C = 2
    x = torch.randn(2, C, 8, 12, 16, dtype=torch.float64)
    z = haar_dwt3(x, 1).view(2, 8, C, 4, 6, 8)  # (B, s, C, ...)
    approx, details = ptwt.wavedec3(x, "haar", level=1)
    # ptwt key letters are axes (-3, -2, -1) = (D, H, W), 'a' = low-pass L, 'd' = high-pass H;
    # same sign convention, so no flips: 'aad' is our LLH.
    bands = {"aaa": approx, **details}
    for s, name in enumerate(SUBBANDS):
        key = name.replace("L", "a").replace("H", "d")
        assert torch.allclose(z[:, s], bands[key], atol=1e-12), (name, key)
    # and the inverse agrees with ptwt's
    back = ptwt.waverec3((approx, details), "haar")
    assert torch.allclose(haar_idwt3(haar_dwt3(x, 1), 1), back, atol=1e-12)


def test_white_noise_stays_white() -> None:
    x = torch.randn(4, 1, 32, 32, 32)
    for levels in (1, 2):
        z = haar_dwt3(x, levels)  # (4, 8^L, ...)
        var = z.transpose(0, 1).reshape(z.shape[1], -1).var(dim=1)
        n = z[:, 0].numel()  # samples per channel
        assert (var - 1).abs().max().item() < 6 * math.sqrt(2 / n) + 0.02  # ~6 sigma of the estimate
        # and uncorrelated across channels: level-1 channel correlation matrix ~ identity
        if levels == 1:
            zc = z.transpose(0, 1).reshape(8, -1)
            corr = torch.corrcoef(zc)
            assert (corr - torch.eye(8)).abs().max().item() < 0.05


def test_subband_names() -> None:
    names = subband_names(1, ["t1n", "t2f"])
    assert names[:4] == ["LLL:t1n", "LLL:t2f", "LLH:t1n", "LLH:t2f"]
    assert names[-1] == "HHH:t2f" and len(names) == 16
    n2 = subband_names(2, ["a"])
    assert len(n2) == 64 and n2[0] == "LLL.LLL:a"
    # channel = s2 * 8 + s1 for C=1: channel 1 is (s1=LLH, s2=LLL), channel 8 is (s1=LLL, s2=LLH)
    assert n2[1] == "LLH.LLL:a" and n2[8] == "LLL.LLH:a"
    assert len(subband_names(3, ["a", "b"])) == 1024


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_level0_is_pixel_space_the_identity_with_unbanded_names(backend: str) -> None:
    # the wavelet-vs-pixel ablation (issue 16): depth zero keeps every voxel and any shape, and its
    # channel names carry no sub-band, so no detail weight can find a band to weigh
    x = torch.randn(2, 3, 5, 7, 3)
    assert torch.equal(fast_dwt3(x, 0, backend=backend), x)  # type: ignore[arg-type]
    assert torch.equal(fast_idwt3(x, 0, backend=backend), x)  # type: ignore[arg-type]
    assert subband_names(0, ["t1n", "WT"]) == ["image:t1n", "image:WT"]
    with pytest.raises(ValueError, match=">= 0"):
        fast_dwt3(x, -1)


def test_level2_channel_names_match_layout() -> None:
    """Channel 8 of level 2 (C=1) is subband LLH of the level-1 LLL band."""
    x = torch.randn(1, 1, 8, 8, 8, dtype=torch.float64)
    z2 = haar_dwt3(x, 2)
    lll = haar_dwt3(x, 1)[:, :1]  # (1, 1, 4, 4, 4)
    assert torch.allclose(z2[:, 8], haar_dwt3(lll, 1)[:, 1], atol=1e-12)


def test_not_divisible_error_teaches() -> None:
    with pytest.raises(ValueError, match=r"\(155, 240, 240\) not divisible by 2\*\*levels=2: pad to \(156, 240, 240\)"):
        fast_dwt3(torch.zeros(1, 1, 155, 240, 240), levels=1)  # shape check before any work
    with pytest.raises(ValueError, match=r"2\*\*levels=4: pad to \(20, 16, 16\)"):
        fast_dwt3(torch.zeros(1, 1, 18, 16, 16), levels=2)
    with pytest.raises(ValueError, match="levels=2"):
        fast_idwt3(torch.zeros(1, 8, 2, 2, 2), levels=2)
    with pytest.raises(ValueError, match=r"\(B, C, D, H, W\)"):
        fast_dwt3(torch.zeros(2, 16, 16, 16))


def test_gradient_is_adjoint() -> None:
    """Orthonormal: d<dwt(x), g>/dx = idwt(g)."""
    x = torch.randn(1, 2, 8, 8, 8, requires_grad=True)
    g = torch.randn(1, 16, 4, 4, 4)
    (fast_dwt3(x, 1, backend="eager") * g).sum().backward()
    assert torch.allclose(x.grad, haar_idwt3(g, 1), atol=1e-6)


def test_bfloat16_close_to_float32() -> None:
    x = torch.rand(1, 2, 16, 16, 16) * 2 - 1
    ref = haar_dwt3(x, 1)
    z = haar_dwt3(x.bfloat16(), 1)
    assert z.dtype == torch.bfloat16
    assert (z.float() - ref).abs().max().item() < 0.02


# --------------------------------------------------------------------------------------------
# GPU: the fast backends against the eager reference (run with -m gpu on a CUDA machine)
# --------------------------------------------------------------------------------------------

gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("backend", ["triton", "compile", "matmul"])
@pytest.mark.parametrize("shape", [(1, 1, 2, 2, 2), (2, 3, 6, 10, 130), (1, 4, 32, 18, 24)])
@pytest.mark.parametrize("levels", [1, 2])
def test_gpu_backends_match_eager(backend: str, shape: tuple[int, ...], levels: int) -> None:
    if backend == "triton":
        from medidiff.latents.haar import triton_available

        if not triton_available():
            pytest.skip("triton not importable")
    if any(s % 2**levels for s in shape[2:]):
        pytest.skip("shape not divisible")
    x = torch.randn(*shape, device="cuda")
    ref = haar_dwt3(x.double(), levels)
    z = fast_dwt3(x, levels, backend=backend)  # type: ignore[arg-type]
    assert (z.double() - ref).abs().max().item() < 1e-5
    assert (fast_idwt3(z, levels, backend=backend) - x).abs().max().item() < 1e-5  # type: ignore[arg-type]
    zb = fast_dwt3(x.bfloat16(), levels, backend=backend)  # type: ignore[arg-type]
    assert zb.dtype == torch.bfloat16
    assert (zb.double() - ref).abs().max().item() < 0.05 * max(1.0, ref.abs().max().item())


@pytest.mark.gpu
@gpu
def test_gpu_triton_gradient_is_adjoint() -> None:
    from medidiff.latents.haar import triton_available

    if not triton_available():
        pytest.skip("triton not importable")
    x = torch.randn(1, 2, 8, 8, 8, device="cuda", requires_grad=True)
    g = torch.randn(1, 16, 4, 4, 4, device="cuda")
    (fast_dwt3(x, 1, backend="triton") * g).sum().backward()
    assert torch.allclose(x.grad, haar_idwt3(g, 1), atol=1e-5)
