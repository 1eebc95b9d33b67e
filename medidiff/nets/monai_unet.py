"""Adapter: MONAI's ``DiffusionModelUNet`` behind medidiff's denoiser signature (``net.type: monai``).

It exists as the reference the benchmark compares against and for users who want MONAI's
published architecture (MONAI Generative Models, arXiv:2307.15208). Differences from UNet3D:

* scalars go through medidiff's :class:`ScalarEmbedding` and are added to MONAI's time
  embedding (MONAI has none); classes use MONAI's own table with num_classes + 1 rows (CFG null);
* MONAI's cross-attention has no key mask, so ``context_mask`` is only accepted when it keeps
  every token or drops every token of a sample (the latter zeroes that sample's context, which
  is not "no cross-attention" but is how MONAI users drop text); partial masks raise;
* ``resample``, ``skip`` and ``stem_patch`` are UNet3D options (NetConfig rejects them here).
"""

from __future__ import annotations

import torch
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
        if context is not None and context_mask is not None:
            cm = context_mask.bool()
            partial = cm.any(dim=1) & ~cm.all(dim=1)
            if bool(partial.any()):
                raise ValueError(
                    "net.type='monai' cannot mask individual context tokens (MONAI cross-attention has "
                    "no key mask): pad with a learned/null token instead or use net.type='unet3d'"
                )
            context = context * append_dims(cm.all(dim=1).to(context.dtype), context.ndim)
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
        return out.to(out_dtype).contiguous()
