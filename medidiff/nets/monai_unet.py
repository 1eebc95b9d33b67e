"""Adapter: MONAI's ``DiffusionModelUNet`` behind medidiff's denoiser signature (``net.type: monai``).

It exists as the reference the benchmark compares against and for users who want MONAI's
published architecture (MONAI Generative Models, arXiv:2307.15208). Differences from UNet3D:

* scalars go through medidiff's :class:`ScalarEmbedding` and are added to MONAI's time
  embedding (MONAI has none); classes use MONAI's own table with num_classes + 1 rows (CFG null);
* MONAI's cross-attention has no key mask, yet every prompt is padded to ``max_length`` tokens.
  Its cross-attention blocks are given one (``_masked_cross_attention``: the same weights,
  a forward that passes ``context_mask`` to scaled-dot-product attention), so padding tokens
  are ignored exactly as in UNet3D, and a sample whose tokens are all masked (text dropped for
  CFG) gets no cross-attention update at all;
* what MONAI cannot build is refused by :class:`NetConfig` by name (``skip``, ``resample``,
  ``stem_patch``, ``norm``, ``mid_attention``, ``use_scale_shift_norm``, ``dropout``,
  ``zero_init``, ``checkpointing``), never accepted and ignored.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medidiff.nets.config import NetConfig
from medidiff.nets.embeddings import ScalarEmbedding, append_dims
from medidiff.nets.unet3d import memory_format

__all__ = ["MonaiUNet"]


class _AddExtra(nn.Module):
    """Wraps MONAI's time MLP so an extra (B, E) embedding can be added to its output."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.extra: Tensor | None = None

    def forward(self, t_emb: Tensor) -> Tensor:
        out = self.inner(t_emb)
        return out if self.extra is None else out + self.extra.to(out.dtype)


@functools.cache
def _masked_cross_attention() -> type[nn.Module]:
    """The class :class:`MonaiUNet` gives MONAI's cross-attention blocks (built on first use so
    that importing medidiff.nets does not import MONAI)."""
    from monai.networks.blocks import CrossAttentionBlock

    class _MaskedCrossAttention(CrossAttentionBlock):
        """MONAI's cross-attention with a key mask: ``key_mask`` (B, L) bool, True = attend, set by
        :class:`MonaiUNet` around each forward (None: MONAI's own forward). Same parameters, so
        checkpoints load either way."""

        key_mask: Tensor | None = None

        def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:  # type: ignore[override]
            """x (B, N, C) voxel tokens, context (B, L, Dctx) -> (B, N, C)."""
            mask = self.key_mask
            if mask is None or context is None:
                return super().forward(x, context)
            q = self.input_rearrange(self.to_q(x))  # (B, heads, N, d)
            k = self.input_rearrange(self.to_k(context))  # (B, heads, L, d)
            v = self.input_rearrange(self.to_v(context))
            keep = mask.any(dim=1)  # (B,)
            # all-masked rows would softmax over nothing (NaN): attend everywhere, then zero the update
            attn_mask = (mask | ~keep[:, None])[:, None, None, :]  # (B, 1, 1, L)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, scale=self.scale,
                                                 dropout_p=self.dropout_rate if self.training else 0.0)
            out = self.drop_output(self.out_proj(self.out_rearrange(out)))  # (B, N, C)
            return out * append_dims(keep.to(out.dtype), out.ndim)

    return _MaskedCrossAttention


class MonaiUNet(nn.Module):
    """MONAI ``DiffusionModelUNet`` with the forward signature of :class:`UNet3D`."""

    def __init__(self, cfg: NetConfig) -> None:
        super().__init__()
        if cfg.type != "monai":
            raise ValueError(f"MonaiUNet needs net.type='monai', got {cfg.type!r}")
        from monai.networks.nets import DiffusionModelUNet

        self.cfg = cfg
        self.unet = DiffusionModelUNet(
            spatial_dims=cfg.spatial_dims,
            in_channels=cfg.in_channels + cfg.cond_channels,
            out_channels=cfg.out_channels,
            num_res_blocks=tuple(cfg.num_res_blocks),
            channels=tuple(cfg.channels),
            attention_levels=tuple(cfg.attention_levels),
            norm_num_groups=cfg.norm_groups,
            norm_eps=cfg.norm_eps,
            num_head_channels=cfg.head_dim,
            with_conditioning=cfg.cross_attention_dim is not None,
            cross_attention_dim=cfg.cross_attention_dim,
            num_class_embeds=cfg.num_classes + 1 if cfg.num_classes > 0 else None,
            use_flash_attention=torch.cuda.is_available(),
        )
        self.unet.time_embed = _AddExtra(self.unet.time_embed)
        masked_cls = _masked_cross_attention()
        for m in self.unet.modules():
            if type(m) is masked_cls.__base__:  # the text cross-attention of each transformer block
                m.__class__ = masked_cls
        emb_dim = cfg.channels[0] * 4  # MONAI's time_embed_dim
        self.scalar_embed = ScalarEmbedding(cfg.num_scalars, emb_dim) if cfg.num_scalars > 0 else None
        if cfg.channels_last:
            self.to(memory_format=memory_format(cfg.spatial_dims))

    def forward(
        self,
        x: Tensor,
        t: Tensor,
        *,
        cond_image: Tensor | None = None,
        class_labels: Tensor | None = None,
        scalars: Tensor | None = None,
        scalars_mask: Tensor | None = None,
        context: Tensor | None = None,
        context_mask: Tensor | None = None,
    ) -> Tensor:
        """x (B, C_in, *S), t (B,) -> (B, C_out, *S); arguments as in :class:`UNet3D`."""
        cfg = self.cfg
        if (cond_image is None) != (cfg.cond_channels == 0):
            raise ValueError(f"net.cond_channels={cfg.cond_channels} but cond_image is {'missing' if cond_image is None else 'given'}")
        out_dtype = x.dtype
        if cond_image is not None:
            x = torch.cat([x, cond_image.to(x.dtype)], dim=1)
        if cfg.channels_last:
            x = x.contiguous(memory_format=memory_format(cfg.spatial_dims))
        if cfg.num_classes > 0 and class_labels is None:
            class_labels = torch.full((x.shape[0],), cfg.num_classes, device=x.device, dtype=torch.long)
        masked = [m for m in self.unet.modules() if isinstance(m, _masked_cross_attention())]
        if context is not None and context_mask is not None:
            if tuple(context_mask.shape) != tuple(context.shape[:2]):
                raise ValueError(f"context_mask {tuple(context_mask.shape)} does not match context "
                                 f"{tuple(context.shape)}: one flag per token, (B, L)")
            for m in masked:
                m.key_mask = context_mask.bool().to(x.device)  # (B, L)
        wrapper = self.unet.time_embed
        assert isinstance(wrapper, _AddExtra)
        if self.scalar_embed is not None:
            if scalars is None:
                scalars = torch.full((x.shape[0], cfg.num_scalars), float("nan"), device=x.device)
            wrapper.extra = self.scalar_embed(scalars, scalars_mask)
        elif scalars is not None:
            raise ValueError("scalars given but net.num_scalars = 0")
        try:
            out = self.unet(x, t * cfg.time_scale, context=context, class_labels=class_labels)
        finally:
            wrapper.extra = None
            for m in masked:
                m.key_mask = None
        return out.to(out_dtype).contiguous()
