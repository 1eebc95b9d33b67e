"""A frozen evaluation segmenter (MONAI SegResNet) and region Dice / HD95.

The segmenter follows the BraTS recipe of Myronenko 2018 (arXiv:1810.11654) and MONAI's BraTS
tutorial: 4 modalities in, 3 overlapping region channels (WT, TC, ET) out with a sigmoid each,
trained with DiceCE (soft Dice + BCE on the logits). It is a measuring instrument, not a product,
so a plain torch loop trains it (no DeepSpeed): ``steps`` Adam(W) steps of ``batch_size`` cases
drawn by a seeded generator (an epoch = one random permutation), no augmentation.

Metrics per case and region (``WT``, ``TC``, ``ET`` from :data:`medidiff.data.brats.REGIONS`):

* Dice via ``monai.metrics.DiceMetric(ignore_empty=False)``: empty truth and empty prediction
  is 1 (nothing to find, nothing found), exactly one of them empty is 0.
* HD95 via ``monai.metrics.HausdorffDistanceMetric(percentile=95)`` in mm (voxel spacing given).
  It is undefined (MONAI returns nan/inf) when the truth or the prediction is empty. Our rule:
  both empty -> 0 mm; exactly one empty -> the volume diagonal in mm (the largest distance the
  grid allows, as the BraTS challenge penalises with 373.13 mm, the 240x240x155 diagonal). The
  number of penalised (undefined) cases is reported beside every HD95 mean, so a mean driven by
  penalties is visible.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from medidiff.data.brats import REGIONS

__all__ = [
    "REGION_NAMES",
    "SegScores",
    "build_segmenter",
    "train_segmenter",
    "predict",
    "segmentation_scores",
    "evaluate_segmenter",
    "summarise_scores",
    "aggregate_seeds",
    "volume_diagonal",
]

REGION_NAMES: tuple[str, ...] = tuple(REGIONS)


@dataclass
class SegScores:
    """Per-case scores: dice, hd95 (N, 3) float64 with the penalty applied; undefined (N, 3) bool
    marks HD95 values that are the penalty (exactly one of truth/prediction empty)."""

    dice: np.ndarray
    hd95: np.ndarray
    undefined: np.ndarray
    case_ids: list[str]


def build_segmenter(in_channels: int = 4, init_filters: int = 8) -> nn.Module:
    """SegResNet(3D, ``in_channels`` -> 3 region logits); input sides must be multiples of 8."""
    from monai.networks.nets import SegResNet

    groups = min(8, init_filters)
    return SegResNet(
        spatial_dims=3,
        init_filters=init_filters,
        in_channels=in_channels,
        out_channels=len(REGION_NAMES),
        blocks_down=(1, 2, 2, 4),
        blocks_up=(1, 1, 1),
        norm=("GROUP", {"num_groups": groups}),
        num_groups=groups,
    )


def train_segmenter(
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    steps: int,
    batch_size: int,
    seed: int,
    lr: float = 1e-3,
    weight_decay: float = 1e-5,
    init_filters: int = 8,
    device: str | torch.device = "cpu",
    progress: bool = True,
    desc: str = "segmenter",
) -> nn.Module:
    """Train a SegResNet on ``images`` (N, C, X, Y, Z) in [-1, 1] and ``labels`` (N, 3, X, Y, Z).

    The seed fixes the initial weights and the batch order. Returns the model in eval mode.
    """
    from monai.losses import DiceCELoss
    from tqdm.auto import tqdm

    if images.shape[0] != labels.shape[0] or images.shape[0] < 1:
        raise ValueError(f"images {tuple(images.shape)} and labels {tuple(labels.shape)} must hold the same N >= 1 cases")
    bad = [s for s in images.shape[2:] if s % 8]
    if bad:
        raise ValueError(f"SegResNet halves the grid 3 times: spatial shape {tuple(images.shape[2:])} must be a multiple of 8 (set data.roi)")
    device = torch.device(device)
    torch.manual_seed(seed)
    model = build_segmenter(images.shape[1], init_filters).to(device)
    # sigmoid per region (overlapping WT/TC/ET), not softmax over classes
    loss_fn = DiceCELoss(sigmoid=True, smooth_nr=1e-5, smooth_dr=1e-5)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    gen = torch.Generator().manual_seed(seed)
    n = images.shape[0]
    order = torch.empty(0, dtype=torch.long)
    model.train()
    bar = tqdm(range(steps), desc=desc, unit="step", disable=not progress, leave=False)
    for _ in bar:
        while order.numel() < batch_size:
            order = torch.cat([order, torch.randperm(n, generator=gen)])
        idx, order = order[:batch_size], order[batch_size:]
        x = images[idx].to(device)
        y = labels[idx].to(device).float()
        loss = loss_fn(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        bar.set_postfix(loss=f"{loss.item():.3f}")
    model.eval()
    return model


@torch.no_grad()
def predict(
    model: nn.Module, images: torch.Tensor, *, threshold: float = 0.5, batch_size: int = 2,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """(N, C, X, Y, Z) -> (N, 3, X, Y, Z) bool region masks (sigmoid > ``threshold``)."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.eval()
    out = []
    for start in range(0, images.shape[0], batch_size):
        x = images[start:start + batch_size].to(device)
        out.append((torch.sigmoid(model(x)) > threshold).cpu())
    return torch.cat(out)


def volume_diagonal(shape: Sequence[int], spacing: Sequence[float]) -> float:
    """Diagonal of the grid in mm: the HD95 penalty for an undefined case."""
    return float(math.sqrt(sum((float(n) * float(s)) ** 2 for n, s in zip(shape, spacing))))


def segmentation_scores(
    pred: torch.Tensor,
    truth: torch.Tensor,
    spacing: Sequence[float],
    *,
    percentile: float = 95.0,
    case_ids: Sequence[str] | None = None,
) -> SegScores:
    """Dice and HD``percentile`` of (N, R, X, Y, Z) binary ``pred`` vs ``truth`` (see module doc)."""
    from monai.metrics import DiceMetric, HausdorffDistanceMetric

    if pred.shape != truth.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and truth {tuple(truth.shape)} differ in shape")
    p, t = pred.float(), truth.float()
    dice = DiceMetric(include_background=True, reduction="none", ignore_empty=False)(p, t)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MONAI warns on every empty mask; we handle them below
        hd = HausdorffDistanceMetric(include_background=True, percentile=percentile, reduction="none")(
            p, t, spacing=[float(s) for s in spacing]
        )
    hd = hd.double().cpu().numpy()
    p_empty = (p.flatten(2).sum(-1) == 0).cpu().numpy()  # (N, R)
    t_empty = (t.flatten(2).sum(-1) == 0).cpu().numpy()
    undefined = p_empty ^ t_empty
    hd = np.where(p_empty & t_empty, 0.0, hd)
    hd = np.where(undefined, volume_diagonal(pred.shape[2:], spacing), hd)
    ids = list(case_ids) if case_ids is not None else [str(i) for i in range(pred.shape[0])]
    return SegScores(dice.double().cpu().numpy(), hd, undefined, ids)


def evaluate_segmenter(
    model: nn.Module,
    images: torch.Tensor,
    truth: torch.Tensor,
    spacing: Sequence[float],
    *,
    threshold: float = 0.5,
    percentile: float = 95.0,
    batch_size: int = 2,
    case_ids: Sequence[str] | None = None,
) -> SegScores:
    """Segment ``images`` and score against ``truth`` (N, 3, X, Y, Z)."""
    pred = predict(model, images, threshold=threshold, batch_size=batch_size)
    return segmentation_scores(pred, truth, spacing, percentile=percentile, case_ids=case_ids)


def summarise_scores(scores: SegScores) -> dict[str, dict[str, float | int]]:
    """Mean over cases per region: ``{"WT": {"dice", "hd95", "hd95_undefined", "cases"}, ...}``."""
    out: dict[str, dict[str, float | int]] = {}
    for r, name in enumerate(REGION_NAMES):
        out[name] = {
            "dice": float(scores.dice[:, r].mean()),
            "hd95": float(scores.hd95[:, r].mean()),
            "hd95_undefined": int(scores.undefined[:, r].sum()),
            "cases": int(scores.dice.shape[0]),
        }
    return out


def aggregate_seeds(per_seed: Sequence[dict[str, dict[str, float | int]]]) -> dict[str, dict[str, float | int]]:
    """Mean and std (ddof=1; 0 for one seed) over seeds of per-seed summaries; undefined counts summed."""
    out: dict[str, dict[str, float | int]] = {}
    for name in REGION_NAMES:
        row: dict[str, float | int] = {}
        for key in ("dice", "hd95"):
            vals = np.array([float(s[name][key]) for s in per_seed])
            row[f"{key}_mean"] = float(vals.mean())
            row[f"{key}_std"] = float(vals.std(ddof=1)) if len(vals) > 1 else 0.0
        row["hd95_undefined"] = int(sum(int(s[name]["hd95_undefined"]) for s in per_seed))
        row["cases"] = int(per_seed[0][name]["cases"]) if per_seed else 0
        row["seeds"] = len(per_seed)
        out[name] = row
    return out
