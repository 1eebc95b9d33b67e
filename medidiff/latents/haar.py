"""Fast orthonormal 3D Haar transform (DWT/IDWT) for (B, C, D, H, W) volumes.

One level
---------
The volume is cut into 2x2x2 blocks. Along each axis the pair ``(a, b)`` of a block becomes
``L = (a + b) / sqrt(2)`` and ``H = (a - b) / sqrt(2)`` (pywt/ptwt's sign convention, so our
bands equal ``ptwt.wavedec3(x, "haar", level=1)`` exactly, no sign flips). Doing this on the three
axes gives eight subbands of size (D/2, H/2, W/2); the LLL band is the block sum / sqrt(8), so a
[-1, 1] image has LLL in [-sqrt(8), sqrt(8)] (FIELD-NOTES, Wavelets).

Subband index and names: ``s = 4*bD + 2*bH + bW`` with ``b = 0`` for low-pass ``L`` and 1 for
high-pass ``H``; the name lists the axes in (D, H, W) order::

    s:    0    1    2    3    4    5    6    7
        LLL  LLH  LHL  LHH  HLL  HLH  HHL  HHH        (ptwt keys: aaa aad ada add daa dad dda ddd)

Channel order (subband-major): ``channel = s * C + c`` for input channel ``c``, i.e. the output
(B, 8C, D/2, H/2, W/2) is a view of (B, 8, C, D/2, H/2, W/2). This is WDM's layout
(``cat([LLL, LLH, ..., HHH], dim=1)``) and makes per-subband statistics a reshape away.

Several levels: full wavelet packet
-----------------------------------
The usual pyramid (recursing only on LLL) gives bands of different sizes, which is not one tensor
for a denoiser. For ``levels = L > 1`` we therefore apply the same one-level transform to *all*
channels again, L times (a full Haar wavelet packet of depth L, i.e. a 3D Walsh-Hadamard transform
of (2^L)^3 blocks). It stays orthonormal and exactly invertible and gives one tensor
(B, 8^L C, D/2^L, H/2^L, W/2^L). Level 1 is exactly WDM's layout. With ``s_l`` the subband chosen
at step ``l`` (step 1 acts on the image)::

    channel = sum_l s_l * 8**(l-1) * C + c        (s_L is the slowest-varying index)

so channels ``[0, C)`` are LLL of LLL of ... (the block sum over (2^L)^3 voxels / sqrt(8)^L), and
:func:`subband_names` names channel ``k`` ``"<s_1 name>.<s_2 name>...:<modality>"``.

``levels = 0`` is the transform of depth zero, the identity: pixel space, for the ablation of wavelet
against pixel diffusion at an equal budget (WDM-3D's comparison). Its channels are named ``"image:<modality>"``
(no sub-band, so no detail weight applies).

Backends
--------
``eager``  sum/difference butterflies on a strided view (works everywhere, differentiable).
``matmul`` the eight outputs in one contraction with the 8x8 orthonormal Haar matrix.
``compile`` the butterflies under ``torch.compile`` (one fused kernel; compiled once per backend
           and cached).
``triton`` a hand-written kernel: one read of the input and one write of the output per level
           (memory-bound, so this is the floor); coalesced row loads split into even/odd W and
           interleaved row stores; CUDA only, needs triton; backward = the other transform.
           Measured (benchmarks/results, (4,4,240,240,160) fp32, fwd+inv, bytes read+written):
           H100 2.37 TB/s (clone 2.95), H200 2.71 TB/s (clone 3.95); ptwt 0.22 TB/s on both.
``auto``   ``triton`` on CUDA when importable, else ``eager`` (CPU default: eager; compiling on
           CPU costs more than it saves for the sizes we use). ``benchmarks/dwt_bench.py`` measures
           them all.
"""

from __future__ import annotations

import functools
import itertools
import math
from typing import Callable, Literal, Sequence

import torch

__all__ = [
    "SUBBANDS",
    "Backend",
    "subband_names",
    "check_divisible",
    "haar_dwt3",
    "haar_idwt3",
    "haar_matrix3",
    "fast_dwt3",
    "fast_idwt3",
    "triton_available",
]

Backend = Literal["auto", "eager", "matmul", "compile", "triton"]

# s = 4*bD + 2*bH + bW, L = low-pass, H = high-pass, letters in (D, H, W) order.
SUBBANDS: tuple[str, ...] = tuple("".join(p) for p in itertools.product("LH", repeat=3))
_INV_SQRT8 = 1.0 / math.sqrt(8.0)


def subband_names(levels: int, modalities: Sequence[str]) -> list[str]:
    """Name of every output channel of a ``levels``-deep transform, in channel order.

    Level 1 with modalities (t1n, t1c): ``["LLL:t1n", "LLL:t1c", "LLH:t1n", ..., "HHH:t1c"]``.
    Level 2: ``"LLL.LLH:t1n"`` is subband LLH (second step) of subband LLL (first step).
    """
    if levels < 0:
        raise ValueError(f"levels must be >= 0, got {levels}")
    if not modalities:
        raise ValueError("modalities must not be empty")
    if levels == 0:  # the identity transform: the image's own channels
        return [f"image:{m}" for m in modalities]
    names = []
    # channel = sum_l s_l 8^(l-1) C + c  ->  iterate s_L slowest, ..., s_1, then c fastest.
    for steps in itertools.product(range(8), repeat=levels):  # (s_L, ..., s_1)
        band = ".".join(SUBBANDS[s] for s in reversed(steps))
        names.extend(f"{band}:{m}" for m in modalities)
    return names


def check_divisible(spatial: Sequence[int], levels: int) -> None:
    """Raise a ValueError that says how to pad when ``spatial`` is not divisible by 2**levels."""
    f = 2**levels
    spatial = tuple(int(s) for s in spatial)
    if any(s % f for s in spatial):
        padded = tuple(-(-s // f) * f for s in spatial)
        raise ValueError(
            f"image shape {spatial} not divisible by 2**levels={f}: pad to {padded} "
            f"(data.roi) or use fewer levels"
        )


def _check_input(x: torch.Tensor, levels: int) -> None:
    if x.ndim != 5:
        raise ValueError(f"expected a (B, C, D, H, W) tensor, got shape {tuple(x.shape)}")
    if not isinstance(levels, int) or levels < 0:
        raise ValueError(f"levels must be an integer >= 0, got {levels!r}")
    check_divisible(x.shape[2:], levels)


# --------------------------------------------------------------------------------------------
# Eager butterflies (reference; autograd works through them)
# --------------------------------------------------------------------------------------------


def _pair(t: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    a, b = t.select(dim, 0), t.select(dim, 1)
    return a + b, a - b


def _dwt1_eager(x: torch.Tensor) -> torch.Tensor:
    """One level. (B, C, D, H, W) -> (B, 8C, D/2, H/2, W/2)."""
    B, C, D, H, W = x.shape
    v = x.reshape(B, C, D // 2, 2, H // 2, 2, W // 2, 2)
    bands = []
    for d in _pair(v, 3):  # (B, C, D/2, H/2, 2, W/2, 2)
        for h in _pair(d, 4):  # (B, C, D/2, H/2, W/2, 2)
            bands.extend(_pair(h, 5))  # (B, C, D/2, H/2, W/2) each, lo before hi
    # one scale at the end instead of 1/sqrt(2) per axis: fewer passes over memory
    z = torch.stack(bands, dim=1) * _INV_SQRT8  # (B, 8, C, D/2, H/2, W/2)
    return z.reshape(B, 8 * C, D // 2, H // 2, W // 2)


def _unpair(lo: torch.Tensor, hi: torch.Tensor, dim: int) -> torch.Tensor:
    return torch.stack((lo + hi, lo - hi), dim=dim)


def _idwt1_eager(z: torch.Tensor) -> torch.Tensor:
    """One level. (B, 8C, D/2, H/2, W/2) -> (B, C, D, H, W)."""
    B, C8, D2, H2, W2 = z.shape
    C = C8 // 8
    b = z.reshape(B, 8, C, D2, H2, W2).unbind(1)
    w = [_unpair(b[2 * i], b[2 * i + 1], -1) for i in range(4)]  # (B, C, D2, H2, W2, 2)
    h = [_unpair(w[2 * i], w[2 * i + 1], 4) for i in range(2)]  # (B, C, D2, H2, 2, W2, 2)
    v = _unpair(h[0], h[1], 3)  # (B, C, D2, 2, H2, 2, W2, 2)
    return (v * _INV_SQRT8).reshape(B, C, 2 * D2, 2 * H2, 2 * W2)


# --------------------------------------------------------------------------------------------
# One contraction with the 8x8 Haar matrix
# --------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _haar_matrix3_cpu() -> torch.Tensor:
    h = torch.tensor([[1.0, 1.0], [1.0, -1.0]], dtype=torch.float64) / math.sqrt(2.0)
    return torch.kron(h, torch.kron(h, h))  # rows s = 4sD+2sH+sW, cols k = 4i+2j+l


def haar_matrix3(dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> torch.Tensor:
    """The orthonormal 8x8 3D Haar matrix M: band s = sum_k M[s, k] * block voxel k.

    Block voxel ``k = 4*i + 2*j + l`` for offsets (i, j, l) along (D, H, W); M @ M.T = I.
    """
    return _haar_matrix3_cpu().to(dtype=dtype, device=device)


def _dwt1_matmul(x: torch.Tensor) -> torch.Tensor:
    B, C, D, H, W = x.shape
    m = haar_matrix3(x.dtype, x.device).view(8, 2, 2, 2)
    v = x.reshape(B, C, D // 2, 2, H // 2, 2, W // 2, 2)
    z = torch.einsum("sijl,bcdihjwl->bscdhw", m, v)  # (B, 8, C, D/2, H/2, W/2)
    return z.reshape(B, 8 * C, D // 2, H // 2, W // 2)


def _idwt1_matmul(z: torch.Tensor) -> torch.Tensor:
    B, C8, D2, H2, W2 = z.shape
    m = haar_matrix3(z.dtype, z.device).view(8, 2, 2, 2)
    v = z.reshape(B, 8, C8 // 8, D2, H2, W2)
    x = torch.einsum("sijl,bscdhw->bcdihjwl", m, v)  # M orthogonal: inverse = transpose
    return x.reshape(B, C8 // 8, 2 * D2, 2 * H2, 2 * W2)


# --------------------------------------------------------------------------------------------
# torch.compile of the butterflies (compiled lazily, once)
# --------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _compiled(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    fn = {"dwt": _dwt1_eager, "idwt": _idwt1_eager}[name]
    # dynamic=False: one specialisation per shape; training uses one or two shapes
    return torch.compile(fn, dynamic=False, fullgraph=True)


# --------------------------------------------------------------------------------------------
# Triton: one read + one write per level
# --------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def triton_available() -> bool:
    """True when CUDA is usable and triton imports (it ships with CUDA builds of torch)."""
    if not torch.cuda.is_available():
        return False
    try:
        import triton  # noqa: F401
        import triton.language  # noqa: F401
    except Exception:
        return False
    return True


@functools.lru_cache(maxsize=None)
def _triton_kernels() -> tuple[object, object]:
    """Build the kernels on first use so importing this module never needs triton."""
    import triton
    import triton.language as tl

    @triton.jit
    def dwt_kernel(x_ptr, z_ptr, C, D2, H2, W2, BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr):
        # program (b*C + c, d2, tile of (h2, w2)); the eight band tiles are computed in registers
        pid_bcd = tl.program_id(0)
        pid_hw = tl.program_id(1)
        d2 = pid_bcd % D2
        bc = pid_bcd // D2
        b = bc // C
        c = bc % C
        n_wt = tl.cdiv(W2, BLOCK_W)
        h2 = (pid_hw // n_wt) * BLOCK_H + tl.arange(0, BLOCK_H)
        w2 = (pid_hw % n_wt) * BLOCK_W + tl.arange(0, BLOCK_W)
        mask = (h2[:, None] < H2) & (w2[None, :] < W2)
        H = 2 * H2
        W = 2 * W2
        # int64 offsets: a (4, 4, 256, 256, 256) batch already has 2**28 elements per tensor
        plane = (bc.to(tl.int64) * (2 * D2) + 2 * d2) * H * W
        # x{i}{j}{l}: offsets (i, j, l) along (D, H, W) inside the 2x2x2 block. Each row pair is
        # one contiguous (BLOCK_H, 2*BLOCK_W) load, split into even/odd W: coalesced reads.
        wi = (pid_hw % n_wt) * (2 * BLOCK_W) + tl.arange(0, 2 * BLOCK_W)
        rows = plane + (2 * h2[:, None]).to(tl.int64) * W + wi[None, :]
        m2 = (h2[:, None] < H2) & (wi[None, :] < W)
        x000, x001 = tl.split(tl.reshape(tl.load(x_ptr + rows, mask=m2, other=0.0).to(tl.float32), (BLOCK_H, BLOCK_W, 2)))
        x010, x011 = tl.split(tl.reshape(tl.load(x_ptr + rows + W, mask=m2, other=0.0).to(tl.float32), (BLOCK_H, BLOCK_W, 2)))
        x100, x101 = tl.split(tl.reshape(tl.load(x_ptr + rows + H * W, mask=m2, other=0.0).to(tl.float32), (BLOCK_H, BLOCK_W, 2)))
        x110, x111 = tl.split(tl.reshape(tl.load(x_ptr + rows + H * W + W, mask=m2, other=0.0).to(tl.float32), (BLOCK_H, BLOCK_W, 2)))
        # W butterflies
        a00 = x000 + x001
        d00 = x000 - x001
        a01 = x010 + x011
        d01 = x010 - x011
        a10 = x100 + x101
        d10 = x100 - x101
        a11 = x110 + x111
        d11 = x110 - x111
        # H butterflies -> (bH, bW) pairs for each D offset
        ll0 = a00 + a01
        hl0 = a00 - a01
        lh0 = d00 + d01
        hh0 = d00 - d01
        ll1 = a10 + a11
        hl1 = a10 - a11
        lh1 = d10 + d11
        hh1 = d10 - d11
        s = 0.3535533905932738  # 1/sqrt(8)
        band = D2 * H2 * W2
        out = z_ptr + ((b.to(tl.int64) * 8 * C + c) * D2 + d2) * H2 * W2 + h2[:, None] * W2 + w2[None, :]
        cb = C * band  # distance between subbands s and s+1 (channel s*C + c)
        ty = z_ptr.dtype.element_ty
        tl.store(out + 0 * cb, ((ll0 + ll1) * s).to(ty), mask=mask)  # LLL
        tl.store(out + 1 * cb, ((lh0 + lh1) * s).to(ty), mask=mask)  # LLH (W high)
        tl.store(out + 2 * cb, ((hl0 + hl1) * s).to(ty), mask=mask)  # LHL (H high)
        tl.store(out + 3 * cb, ((hh0 + hh1) * s).to(ty), mask=mask)  # LHH
        tl.store(out + 4 * cb, ((ll0 - ll1) * s).to(ty), mask=mask)  # HLL (D high)
        tl.store(out + 5 * cb, ((lh0 - lh1) * s).to(ty), mask=mask)  # HLH
        tl.store(out + 6 * cb, ((hl0 - hl1) * s).to(ty), mask=mask)  # HHL
        tl.store(out + 7 * cb, ((hh0 - hh1) * s).to(ty), mask=mask)  # HHH

    @triton.jit
    def idwt_kernel(z_ptr, x_ptr, C, D2, H2, W2, BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr):
        pid_bcd = tl.program_id(0)
        pid_hw = tl.program_id(1)
        d2 = pid_bcd % D2
        bc = pid_bcd // D2
        b = bc // C
        c = bc % C
        n_wt = tl.cdiv(W2, BLOCK_W)
        h2 = (pid_hw // n_wt) * BLOCK_H + tl.arange(0, BLOCK_H)
        w2 = (pid_hw % n_wt) * BLOCK_W + tl.arange(0, BLOCK_W)
        mask = (h2[:, None] < H2) & (w2[None, :] < W2)
        band = D2 * H2 * W2
        cb = C * band
        inp = z_ptr + ((b.to(tl.int64) * 8 * C + c) * D2 + d2) * H2 * W2 + h2[:, None] * W2 + w2[None, :]
        lll = tl.load(inp + 0 * cb, mask=mask, other=0.0).to(tl.float32)
        llh = tl.load(inp + 1 * cb, mask=mask, other=0.0).to(tl.float32)
        lhl = tl.load(inp + 2 * cb, mask=mask, other=0.0).to(tl.float32)
        lhh = tl.load(inp + 3 * cb, mask=mask, other=0.0).to(tl.float32)
        hll = tl.load(inp + 4 * cb, mask=mask, other=0.0).to(tl.float32)
        hlh = tl.load(inp + 5 * cb, mask=mask, other=0.0).to(tl.float32)
        hhl = tl.load(inp + 6 * cb, mask=mask, other=0.0).to(tl.float32)
        hhh = tl.load(inp + 7 * cb, mask=mask, other=0.0).to(tl.float32)
        # D butterflies: (bH, bW) bands at D offsets 0 and 1
        ll0 = lll + hll
        ll1 = lll - hll
        lh0 = llh + hlh
        lh1 = llh - hlh
        hl0 = lhl + hhl
        hl1 = lhl - hhl
        hh0 = lhh + hhh
        hh1 = lhh - hhh
        # H butterflies: W-lo (a) and W-hi (d) at offsets (i, j)
        a00 = ll0 + hl0
        a01 = ll0 - hl0
        d00 = lh0 + hh0
        d01 = lh0 - hh0
        a10 = ll1 + hl1
        a11 = ll1 - hl1
        d10 = lh1 + hh1
        d11 = lh1 - hh1
        s = 0.3535533905932738
        H = 2 * H2
        W = 2 * W2
        plane = (bc.to(tl.int64) * (2 * D2) + 2 * d2) * H * W
        # interleave even/odd W so each row is one contiguous (BLOCK_H, 2*BLOCK_W) store
        wi = (pid_hw % n_wt) * (2 * BLOCK_W) + tl.arange(0, 2 * BLOCK_W)
        rows = x_ptr + plane + (2 * h2[:, None]).to(tl.int64) * W + wi[None, :]
        m2 = (h2[:, None] < H2) & (wi[None, :] < W)
        ty = x_ptr.dtype.element_ty
        tl.store(rows, (tl.interleave(a00 + d00, a00 - d00) * s).to(ty), mask=m2)
        tl.store(rows + W, (tl.interleave(a01 + d01, a01 - d01) * s).to(ty), mask=m2)
        tl.store(rows + H * W, (tl.interleave(a10 + d10, a10 - d10) * s).to(ty), mask=m2)
        tl.store(rows + H * W + W, (tl.interleave(a11 + d11, a11 - d11) * s).to(ty), mask=m2)

    return dwt_kernel, idwt_kernel


_TRITON_BLOCK = (8, 64)  # (h2, w2) tile; 8 loads/stores of 512 elements per program


def _launch_grid(B: int, C: int, D2: int, H2: int, W2: int) -> tuple[int, int]:
    bh, bw = _TRITON_BLOCK
    return (B * C * D2, -(-H2 // bh) * -(-W2 // bw))


def _dwt1_triton_raw(x: torch.Tensor) -> torch.Tensor:
    x = x.contiguous()
    B, C, D, H, W = x.shape
    z = torch.empty((B, 8 * C, D // 2, H // 2, W // 2), dtype=x.dtype, device=x.device)
    dwt_kernel, _ = _triton_kernels()
    bh, bw = _TRITON_BLOCK
    dwt_kernel[_launch_grid(B, C, D // 2, H // 2, W // 2)](  # type: ignore[index]
        x, z, C, D // 2, H // 2, W // 2, BLOCK_H=bh, BLOCK_W=bw
    )
    return z


def _idwt1_triton_raw(z: torch.Tensor) -> torch.Tensor:
    z = z.contiguous()
    B, C8, D2, H2, W2 = z.shape
    x = torch.empty((B, C8 // 8, 2 * D2, 2 * H2, 2 * W2), dtype=z.dtype, device=z.device)
    _, idwt_kernel = _triton_kernels()
    bh, bw = _TRITON_BLOCK
    idwt_kernel[_launch_grid(B, C8 // 8, D2, H2, W2)](  # type: ignore[index]
        z, x, C8 // 8, D2, H2, W2, BLOCK_H=bh, BLOCK_W=bw
    )
    return x


class _TritonDWT(torch.autograd.Function):
    # orthonormal transform: the adjoint (backward) of the DWT is the IDWT and vice versa
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return _dwt1_triton_raw(x)

    @staticmethod
    def backward(ctx, g: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return _idwt1_triton_raw(g)


class _TritonIDWT(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return _idwt1_triton_raw(z)

    @staticmethod
    def backward(ctx, g: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return _dwt1_triton_raw(g)


# --------------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------------


def _resolve(backend: Backend, x: torch.Tensor) -> str:
    if backend == "auto":
        return "triton" if x.is_cuda and triton_available() else "eager"
    if backend == "triton" and not (x.is_cuda and triton_available()):
        raise RuntimeError(
            "backend='triton' needs a CUDA tensor and an importable triton; "
            f"got device {x.device}. Use backend='auto' to fall back to eager."
        )
    if backend not in ("eager", "matmul", "compile", "triton"):
        raise ValueError(f"backend must be one of auto, eager, matmul, compile, triton; got {backend!r}")
    return backend


def _one_level(kind: str, backend: str) -> Callable[[torch.Tensor], torch.Tensor]:
    if backend == "eager":
        return _dwt1_eager if kind == "dwt" else _idwt1_eager
    if backend == "matmul":
        return _dwt1_matmul if kind == "dwt" else _idwt1_matmul
    if backend == "compile":
        return _compiled(kind)
    return _TritonDWT.apply if kind == "dwt" else _TritonIDWT.apply  # type: ignore[return-value]


def fast_dwt3(x: torch.Tensor, levels: int = 1, *, backend: Backend = "auto") -> torch.Tensor:
    """Orthonormal Haar DWT (full packet for levels > 1; see module docstring).

    x: (B, C, D, H, W) with D, H, W divisible by 2**levels.
    Returns (B, 8**levels * C, D/2**levels, H/2**levels, W/2**levels), channel order as documented.
    """
    _check_input(x, levels)
    step = _one_level("dwt", _resolve(backend, x))
    for _ in range(levels):
        x = step(x)  # (B, 8C, D/2, H/2, W/2)
    return x


def fast_idwt3(z: torch.Tensor, levels: int = 1, *, backend: Backend = "auto") -> torch.Tensor:
    """Exact inverse of :func:`fast_dwt3`. z: (B, 8**levels * C, D', H', W') -> (B, C, D, H, W)."""
    if z.ndim != 5:
        raise ValueError(f"expected a (B, C', D', H', W') tensor, got shape {tuple(z.shape)}")
    if not isinstance(levels, int) or levels < 0:
        raise ValueError(f"levels must be an integer >= 0, got {levels!r}")
    if z.shape[1] % 8**levels:
        raise ValueError(
            f"{z.shape[1]} channels is not a multiple of 8**levels={8**levels}: "
            f"was this latent made with levels={levels}?"
        )
    step = _one_level("idwt", _resolve(backend, z))
    for _ in range(levels):
        z = step(z)  # (B, C'/8, 2D', 2H', 2W')
    return z


def haar_dwt3(x: torch.Tensor, levels: int = 1) -> torch.Tensor:
    """Eager reference DWT (same result as ``fast_dwt3(..., backend="eager")``)."""
    return fast_dwt3(x, levels, backend="eager")


def haar_idwt3(z: torch.Tensor, levels: int = 1) -> torch.Tensor:
    """Eager reference IDWT."""
    return fast_idwt3(z, levels, backend="eager")
