"""Stage ``vae``: train the 3D KL autoencoder through the one loop, then export it as a codec.

Loss per micro-batch (LDM, arXiv:2112.10752; MAISI)::

    L = |x - x_hat|_1 + kl_weight * KL(q(z|x) || N(0, I))
        + perceptual_weight * P(x, x_hat)                     (only with vae.perceptual_weights)
        + on from step adv_start_step: adv_weight * G_adv + D_loss   (only with vae.adversarial)

Adversarial scheme inside one optimizer step. Generator (autoencoder) and PatchDiscriminator
are one ``nn.Module`` trained by one AdamW; their parameter sets are disjoint, so each only has
to receive the gradient of its own objective:

* ``G_adv = mean((D'(x_hat) - 1)^2)`` (LSGAN, non-saturating form) is evaluated with
  ``torch.func.functional_call`` on *detached* copies of D's parameters: its gradient reaches
  the autoencoder and never D;
* ``D_loss = 0.5 * (mean((D(x) - 1)^2) + mean(D(x_hat.detach())^2))`` runs D on the detached
  reconstruction: its gradient reaches D and never the autoencoder.

So one backward of the sum gives exactly the gradients of the alternating scheme's two steps
taken at the same weights (simultaneous updates, as in LDM's two optimizers stepping on the same
batch). Before ``adv_start_step`` D gets zero gradients (Adam leaves it unchanged). The step
count is a module buffer, so it resumes with the checkpoint. Not supported under ZeRO-3
(``functional_call`` needs full, not partitioned, D weights): an error says so.

Perceptual loss: only from a local safetensors file (never downloaded), see :class:`FeatureNet3D`.
Validation (``train.val_every``): posterior-mean reconstructions of the held-out fold, written
as ``val/psnr`` (dB, data range 2 for [-1, 1]), ``val/ssim`` (MONAI SSIMMetric) and ``val/l1``.
Export (:func:`export_vae`): the codec from the EMA weights, with per-channel latent statistics
fitted at export time over the training set (posterior means, deterministic transforms).
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from medidiff.config import ConfigError, config_hash, from_dict, save_resolved, to_dict
from medidiff.data.config import check_roi_divisible, check_scale_labels
from medidiff.data.dataset import collate_cases, manifest_datasets
from medidiff.errors import MedidiffError
from medidiff.experiment import ExperimentConfig
from medidiff.latents.config import VAECodecConfig, VAEConfig
from medidiff.latents.vae import VAECodec, build_autoencoder, kl_divergence
from medidiff.training import checkpoint as ckpt
from medidiff.training.loop import FitResult, fit, shard
from medidiff.training.launch import process_rank
from medidiff.training.run_dir import claim_run_dir

log = logging.getLogger(__name__)

__all__ = [
    "FeatureNet3D",
    "VAETrainModule",
    "VAELoss",
    "codec_config_of",
    "reconstruction_metrics",
    "train_vae",
    "export_vae",
]

KIND = "medidiff.vae"


# --------------------------------------------------------------------------------------------
# Perceptual loss from a local feature net
# --------------------------------------------------------------------------------------------


class FeatureNet3D(nn.Module):
    """A small 3D conv feature net read from a local safetensors file (no download, no pickle).

    File layout (the architecture is read from the tensor shapes): ``blocks.{i}.weight``
    (C_out, C_in, k, k, k) and ``blocks.{i}.bias`` (C_out,) for i = 0..N-1; block i is a conv
    with padding k // 2, stride 1 for i = 0 and 2 after, then LeakyReLU(0.2). The features of
    every block are compared LPIPS-style (arXiv:1801.03924): unit-normalised over channels,
    squared difference, averaged. A net with C_in = 1 is applied to each modality separately.
    """

    def __init__(self, state: dict[str, torch.Tensor], *, source: str = "<state>") -> None:
        super().__init__()
        n = 0
        while f"blocks.{n}.weight" in state:
            n += 1
        if n == 0:
            raise ConfigError(f"{source}: no 'blocks.0.weight' tensor: not a FeatureNet3D weights file "
                              f"(expected blocks.{{i}}.weight/bias of 3D convs)")
        convs = []
        for i in range(n):
            w = state[f"blocks.{i}.weight"]
            if w.ndim != 5 or w.shape[-1] != w.shape[-2] or w.shape[-1] != w.shape[-3]:
                raise ConfigError(f"{source}: blocks.{i}.weight has shape {tuple(w.shape)}, expected (out, in, k, k, k)")
            conv = nn.Conv3d(w.shape[1], w.shape[0], w.shape[-1], stride=1 if i == 0 else 2,
                             padding=w.shape[-1] // 2, bias=f"blocks.{i}.bias" in state)
            convs.append(conv)
        self.blocks = nn.ModuleList(convs)
        self.load_state_dict(state, strict=True)
        self.requires_grad_(False)
        self.eval()

    @classmethod
    def from_file(cls, path: str | Path) -> FeatureNet3D:
        from safetensors.torch import load_file

        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"vae.perceptual_weights: {path} not found (a local safetensors file; "
                              f"medidiff never downloads feature nets; null turns the loss off)")
        return cls(load_file(str(path)), source=str(path))

    @property
    def in_channels(self) -> int:
        return self.blocks[0].in_channels

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(B, C_in, D, H, W) -> per block (B, C_i, D/2^i, ...)."""
        out = []
        for conv in self.blocks:
            x = F.leaky_relu(conv(x), 0.2)
            out.append(x)
        return out

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """LPIPS-style distance between images x, y (B, C, D, H, W) -> ()."""
        if self.in_channels == 1 and x.shape[1] != 1:  # each modality on its own
            x, y = x.flatten(0, 1).unsqueeze(1), y.flatten(0, 1).unsqueeze(1)
        elif x.shape[1] != self.in_channels:
            raise MedidiffError(f"perceptual feature net takes {self.in_channels} channels, images have {x.shape[1]}")
        x, y = x.to(self.blocks[0].weight.dtype), y.to(self.blocks[0].weight.dtype)
        total = x.new_zeros(())
        fx, fy = self.features(x), self.features(y)
        for a, b in zip(fx, fy):
            a = a / (a.norm(dim=1, keepdim=True) + 1e-10)
            b = b / (b.norm(dim=1, keepdim=True) + 1e-10)
            total = total + ((a - b) ** 2).sum(dim=1).mean()
        return total / len(fx)


# --------------------------------------------------------------------------------------------
# Model and loss for fit()
# --------------------------------------------------------------------------------------------


class VAETrainModule(nn.Module):
    """What the engine trains: ``vae`` (MONAI AutoencoderKL) and optionally ``disc``.

    ``micro_steps`` (a buffer, so it is checkpointed) counts training micro-batches: the
    adversarial terms switch on from optimizer step ``adv_start_step``.
    """

    def __init__(self, vae_cfg: VAEConfig, in_channels: int) -> None:
        super().__init__()
        self.adv_start_step = vae_cfg.adv_start_step
        self.vae = build_autoencoder(vae_cfg.architecture(), in_channels)
        self.disc: nn.Module | None = None
        if vae_cfg.adversarial:
            from monai.networks.nets import PatchDiscriminator

            # instance norm: 3D micro-batches are 1-2 volumes, too few for batch statistics
            self.disc = PatchDiscriminator(spatial_dims=3, channels=vae_cfg.disc_channels, in_channels=in_channels,
                                           out_channels=1, num_layers_d=vae_cfg.disc_layers, norm="INSTANCE")
        self.register_buffer("micro_steps", torch.zeros((), dtype=torch.long))
        # host mirror of micro_steps, read from the (checkpointed) buffer once: reading the GPU
        # buffer every micro-step would stall the CPU each time
        self._micro: int | None = None

    @property
    def dtype(self) -> torch.dtype:
        return next(self.vae.parameters()).dtype

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Posterior-mean reconstruction, (B, C, D, H, W) float32."""
        mu, _ = self.vae.encode(x.to(self.dtype))
        return self.vae.decode(mu).float()

    def forward(self, x: torch.Tensor, generator: torch.Generator, grad_accum: int = 1) -> dict[str, torch.Tensor]:
        """One training micro-batch through every trained part (one call, so that the DeepSpeed
        engine wrapping this module sees one forward per micro-step and keeps ZeRO-3's bookkeeping).

        x (B, C, D, H, W) in [-1, 1] -> ``x_hat`` (B, C, D, H, W) float32, posterior ``mu``/``sigma``
        (B, C', D/f, H/f, W/f); with a discriminator also ``g_adv`` and ``d_loss`` (0-d) once
        optimizer step ``micro_steps // grad_accum`` reaches ``adv_start_step``, before that
        ``disc_zero`` (0-d, zero, touching every discriminator weight).
        """
        mu, sigma = self.vae.encode(x.to(self.dtype))  # (B, C', D/f, H/f, W/f) each
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=torch.float32)
        z = mu.float() + sigma.float() * eps  # reparameterisation with the loop's generator
        x_hat = self.vae.decode(z.to(self.dtype)).float()
        out = {"x_hat": x_hat, "mu": mu, "sigma": sigma}
        if self._micro is None:
            self._micro = int(self.micro_steps)
        step = self._micro // grad_accum
        if self.training:
            self.micro_steps += 1
            self._micro += 1
        if self.disc is not None:
            disc = self.disc
            if step >= self.adv_start_step:
                frozen = {n: p.detach() for n, p in disc.named_parameters()}
                out["g_adv"] = ((_lsgan_logits(disc, x_hat.to(self.dtype), frozen) - 1) ** 2).mean()
                real = _lsgan_logits(disc, x.to(self.dtype))
                fake = _lsgan_logits(disc, x_hat.detach().to(self.dtype))
                out["d_loss"] = 0.5 * (((real - 1) ** 2).mean() + (fake**2).mean())
            else:
                # every parameter in the graph: ZeRO's gradient bucketing expects a gradient for each
                out["disc_zero"] = 0.0 * sum(p.float().sum() for p in disc.parameters())
        return out


def _lsgan_logits(disc: nn.Module, x: torch.Tensor, params: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
    out = torch.func.functional_call(disc, params, (x,)) if params is not None else disc(x)
    return out[-1].float()  # PatchDiscriminator returns every layer's output; the last is the logits


class VAELoss:
    """loss_fn for :func:`medidiff.training.loop.fit` (see the module docstring for the terms).

    Called with the DeepSpeed engine (or the bare :class:`VAETrainModule`), which it calls once.
    """

    def __init__(self, vae_cfg: VAEConfig, grad_accum: int, perceptual: FeatureNet3D | None = None) -> None:
        self.cfg, self.grad_accum, self.perceptual = vae_cfg, grad_accum, perceptual

    def __call__(self, net: nn.Module, batch: dict[str, Any], gen: torch.Generator):
        cfg = self.cfg
        x = batch["image"].float()  # (B, C, D, H, W) in [-1, 1]
        out = net(x, gen, self.grad_accum)
        x_hat = out["x_hat"]
        rec = (x_hat - x).abs().mean()
        kl = kl_divergence(out["mu"], out["sigma"])
        loss = rec + cfg.kl_weight * kl
        # device scalars: the loop reads them back at log steps only
        logs: dict[str, Any] = {"rec_l1": rec.detach(), "kl": kl.detach()}
        if self.perceptual is not None:
            p = self.perceptual.to(x.device).loss(x, x_hat).float()
            loss = loss + cfg.perceptual_weight * p
            logs["perceptual"] = p.detach()
        if "g_adv" in out:
            loss = loss + cfg.adv_weight * out["g_adv"] + out["d_loss"]
            logs.update({"g_adv": out["g_adv"].detach(), "d_loss": out["d_loss"].detach(), "adv_on": 1.0})
        elif "disc_zero" in out:
            loss = loss + out["disc_zero"]
            logs["adv_on"] = 0.0
        return loss, logs


# --------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------


def reconstruction_metrics(x: torch.Tensor, x_hat: torch.Tensor) -> dict[str, float]:
    """PSNR (dB, data range 2 for [-1, 1]), SSIM (MONAI, 3D, per channel, averaged) and L1.

    x, x_hat (B, C, D, H, W). SSIM's window shrinks to fit small volumes (odd, <= 7).
    """
    from monai.metrics import SSIMMetric

    x_hat = x_hat.float().clamp(-1, 1)
    x = x.float()
    mse = ((x_hat - x) ** 2).flatten(1).mean(dim=1).clamp_min(1e-12)  # (B,)
    psnr = (10 * torch.log10(4.0 / mse)).mean()
    win = min(7, *x.shape[2:])
    win = win if win % 2 else win - 1
    # SSIMMetric treats channels jointly via its kernel per channel; shift to [0, 2] is not needed
    ssim = SSIMMetric(spatial_dims=3, data_range=2.0, win_size=max(win, 1))(x_hat, x).mean()
    return {"psnr": float(psnr), "ssim": float(ssim), "l1": float((x_hat - x).abs().mean())}


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


def _run_dir(cfg: ExperimentConfig) -> Path:
    return Path(cfg.output_dir) / cfg.name


def _datasets(cfg: ExperimentConfig, run_dir: Path, *, train_transforms: bool = True):
    """(train, held-out or None) image-only datasets on the roi (multiple of vae.downsample)."""
    check_roi_divisible(cfg.data.roi, cfg.vae.downsample, cfg.data.downsample)
    check_scale_labels(cfg.data, False, "the VAE's training")
    return manifest_datasets(cfg.data, run_dir, divisor=cfg.vae.downsample, with_label=False,
                             train_transforms=train_transforms)


def codec_config_of(cfg: ExperimentConfig) -> VAECodecConfig:
    """The codec config (no statistics yet) an experiment's VAE exports to."""
    mods = list(cfg.data.modalities)
    return VAECodecConfig(in_channels=len(mods), modalities=mods, architecture=cfg.vae.architecture(),
                          encode_mode=cfg.vae.encode_mode)


def _check_zero_stage(cfg: ExperimentConfig) -> None:
    if not cfg.vae.adversarial:
        return
    ds = cfg.train.deepspeed
    stage = None
    if ds.endswith(".json") and Path(ds).is_file():
        stage = json.loads(Path(ds).read_text()).get("zero_optimization", {}).get("stage")
    elif ds.startswith("zero3"):
        stage = 3
    if stage == 3:
        raise MedidiffError(f"vae.adversarial with ZeRO-3 ({ds}) is not supported: the discriminator's generator "
                            f"term needs its full weights; use train.deepspeed: zero2 (the VAE is small)")


# --------------------------------------------------------------------------------------------
# Train and export
# --------------------------------------------------------------------------------------------


def train_vae(cfg: ExperimentConfig, *, resume: bool = False, overwrite: bool = False,
              progress: bool = True) -> FitResult:
    """Train the stage-``vae`` experiment ``cfg`` through :func:`~medidiff.training.loop.fit`."""
    if cfg.stage != "vae":
        raise MedidiffError(f"train_vae needs stage: vae, got stage: {cfg.stage}")
    _check_zero_stage(cfg)
    run_dir = claim_run_dir(_run_dir(cfg), resume=resume, overwrite=overwrite)  # before anything is written
    main = process_rank() == 0  # shared files are written once, by rank 0
    if main:
        save_resolved(cfg, run_dir)
    train_set, val_set = _datasets(cfg, run_dir)
    vcfg = cfg.vae
    perceptual = None
    if vcfg.perceptual_weights is None:
        log.info("perceptual loss off (vae.perceptual_weights is null; feature nets are never downloaded)")
    else:
        perceptual = FeatureNet3D.from_file(vcfg.perceptual_weights)
        log.info("perceptual loss on: %s (%d blocks, weight %g)", vcfg.perceptual_weights,
                 len(perceptual.blocks), vcfg.perceptual_weight)
    if vcfg.adversarial:
        log.info("adversarial loss on from step %d (weight %g)", vcfg.adv_start_step, vcfg.adv_weight)
    torch.manual_seed(cfg.seed)
    codec_cfg = codec_config_of(cfg)
    module = VAETrainModule(vcfg, codec_cfg.in_channels)
    loss_fn = VAELoss(vcfg, cfg.train.grad_accum, perceptual)
    record = {"config": to_dict(cfg), "config_defaults": to_dict(type(cfg)()),  # for resume: _check_resumable
              "config_hash": config_hash(cfg), "codec": to_dict(codec_cfg), "kind": KIND}

    def val_fn(mod: nn.Module, rank: int, world_size: int) -> tuple[dict[str, float], int]:
        loader = DataLoader(shard(val_set, rank, world_size), batch_size=cfg.train.micro_batch, shuffle=False,
                            collate_fn=collate_cases)
        device = next(mod.parameters()).device
        sums: dict[str, float] = {}
        n = 0
        with torch.no_grad():
            for batch in loader:
                x = batch["image"].to(device).float()
                metrics = reconstruction_metrics(x, mod.reconstruct(x))  # type: ignore[operator]
                for k, v in metrics.items():
                    sums[k] = sums.get(k, 0.0) + v * x.shape[0]
                n += x.shape[0]
        return sums, n  # per-volume sums: fit divides by the count over all ranks

    return fit(
        module, loss_fn, train_set, cfg.train, run_dir=run_dir, seed=cfg.seed, resume=resume, record=record,
        collate_fn=collate_cases, val_fn=val_fn if val_set is not None else None, progress=progress,
        num_workers=cfg.data.num_workers, tracking=cfg.log,
    )


def export_vae(run_dir: str | Path, out_dir: str | Path, *, weights: str = "ema",
               device: str | torch.device = "cpu") -> Path:
    """Write the codec folder (config.json + model.safetensors) of a trained VAE run.

    Uses the newest complete checkpoint's ``ema.safetensors`` (or ``model.safetensors`` with
    ``weights='model'``), then fits the latent mean/std over the training split (posterior means,
    deterministic transforms, at most ``vae.stats_batches`` batches). Loadable by ``load_codec``.
    """
    run_dir = Path(run_dir)
    last = ckpt.latest_complete(ckpt.checkpoint_root(run_dir))
    if last is None:
        raise MedidiffError(f"{run_dir}: no complete checkpoint under checkpoints/: train first (medidiff train)")
    state = ckpt.read_state(last)
    record = state.get("record", {})
    if record.get("kind") != KIND:
        raise MedidiffError(f"{last / 'state.json'}: not a VAE run (kind {record.get('kind')!r}); "
                            f"use `medidiff export` for diffusion runs")
    cfg = from_dict(ExperimentConfig, record["config"], source=str(last / "state.json"))
    codec = VAECodec(from_dict(VAECodecConfig, record["codec"], source=str(last / "state.json")))
    if weights not in ("ema", "model"):
        raise ValueError(f"weights must be 'ema' or 'model', got {weights!r}")
    tensors = ckpt.load_tensors(last / f"{weights}.safetensors")
    vae_state = {k[len("vae."):]: v.float() for k, v in tensors.items() if k.startswith("vae.")}
    missing, unexpected = codec.autoencoder.load_state_dict(vae_state, strict=False)
    if missing or unexpected:
        raise MedidiffError(f"{last}: weights do not match the recorded architecture (missing {missing[:3]}, "
                            f"unexpected {unexpected[:3]})")
    codec = codec.to(device).eval()
    train_set, _ = _datasets(cfg, run_dir, train_transforms=False)
    loader = DataLoader(train_set, batch_size=cfg.train.micro_batch, shuffle=False, collate_fn=collate_cases)
    codec.fit_stats(loader, max_batches=cfg.vae.stats_batches)
    out = codec.save_pretrained(out_dir)
    log.info("exported VAE codec (%s weights, step %s) to %s; latent std %s", weights, state.get("step"), out,
             [round(s, 4) for s in codec.config.std or []])
    if not all(math.isfinite(s) for s in codec.config.std or []):
        raise MedidiffError(f"{out}: non-finite latent statistics")
    return out
