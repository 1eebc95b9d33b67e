"""A frozen evaluation segmenter (MONAI SegResNet) and region Dice / HD95.

The segmenter follows the BraTS recipe of Myronenko 2018 (arXiv:1810.11654) and MONAI's BraTS
tutorial: 4 modalities in, 3 overlapping region channels (WT, TC, ET) out with a sigmoid each,
trained with DiceCE (soft Dice + BCE on the logits). It is a measuring instrument, not a product,
so a plain torch loop trains it (no DeepSpeed): AdamW, cosine learning rate, a budget in epochs
with a validation-Dice plateau stop (:func:`train_segmenter`), no augmentation.

Metrics per case and region (``WT``, ``TC``, ``ET`` from :data:`medidiff.data.brats.REGIONS`):

* Dice via ``monai.metrics.DiceMetric(ignore_empty=False)``: empty truth and empty prediction
  is 1 (nothing to find, nothing found), exactly one of them empty is 0.
* HD95 via ``monai.metrics.HausdorffDistanceMetric(percentile=95)`` in mm (voxel spacing given).
  It is undefined (MONAI returns nan/inf) when the truth or the prediction is empty. Our rule:
  both empty -> 0 mm; exactly one empty -> the volume diagonal in mm (the largest distance the
  grid allows, as the BraTS challenge penalises with 373.13 mm, the 240x240x155 diagonal). The
  number of penalised (undefined) cases is reported beside every HD95 mean, so a mean driven by
  penalties is visible.
* Volume away from the label (mL): the predicted voxels farther than :data:`AWAY_MARGIN` voxels
  (Chebyshev) from the labelled region. Dice cannot see a tumour the image shows where its label holds
  none on a case whose label holds one elsewhere, and scores a tumour-free case 0 for one false voxel
  as for a whole tumour; this volume tells the two apart (mask fidelity's unlabelled-tumour check).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from medidiff.data.brats import REGIONS
from medidiff.data.config import DataConfig, intensity_scale

__all__ = [
    "REGION_NAMES",
    "SegScores",
    "TrainingHistory",
    "build_segmenter",
    "save_segmenter",
    "load_segmenter",
    "train_segmenter",
    "predict",
    "segmentation_scores",
    "evaluate_segmenter",
    "summarise_scores",
    "aggregate_seeds",
    "volume_diagonal",
    "away_volume_ml",
    "voxel_ml",
    "AWAY_MARGIN",
]

REGION_NAMES: tuple[str, ...] = tuple(REGIONS)
# voxels beyond which a predicted voxel is away from the label: a boundary's disagreement between segmenter and
# label (a voxel or two at 2 mm) stays out; a second tumour, or one drawn in a tumour-free case, counts
AWAY_MARGIN = 2


@dataclass
class SegScores:
    """Per-case scores: dice, hd95 (N, 3) float64 with the penalty applied; undefined (N, 3) bool
    marks HD95 values that are the penalty (exactly one of truth/prediction empty); away_ml (N, 3)
    float64 the predicted volume away from the labelled region (module doc), when asked for (fidelity
    reads it; utility's many sets would pay for it unread)."""

    dice: np.ndarray
    hd95: np.ndarray
    undefined: np.ndarray
    case_ids: list[str]
    away_ml: np.ndarray | None = None


def build_segmenter(in_channels: int = 4, init_filters: int = 8, out_channels: int = len(REGION_NAMES)) -> nn.Module:
    """SegResNet(3D, ``in_channels`` -> ``out_channels`` logits: 3 sigmoid regions, or background +
    classes for an exclusive segmenter); input sides must be multiples of 8."""
    from monai.networks.nets import SegResNet

    groups = min(8, init_filters)
    return SegResNet(
        spatial_dims=3,
        init_filters=init_filters,
        in_channels=in_channels,
        out_channels=out_channels,
        blocks_down=(1, 2, 2, 4),
        blocks_up=(1, 1, 1),
        norm=("GROUP", {"num_groups": groups}),
        num_groups=groups,
    )


def save_segmenter(model: nn.Module, directory: str | Path, *, kind: str, recipe: Mapping[str, Any]) -> Path:
    """Save a :func:`build_segmenter` net as ``config.json`` (``kind`` and ``recipe``, which must hold
    ``modalities`` and ``init_filters``) + ``model.safetensors``. ``kind`` says what it was trained
    to measure: the feature net and the tissue segmenter are the same architecture, and one must
    not load as the other."""
    import json

    from safetensors.torch import save_file

    from medidiff.files import atomic_path

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    with atomic_path(d / "model.safetensors") as tmp:  # the umask's mode (safetensors creates 0600)
        save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(tmp))
    (d / "config.json").write_text(json.dumps({"kind": kind, "recipe": dict(recipe)}, indent=2, default=str))
    return d


# recipe keys added after nets were saved without them, read as the value every earlier net was trained with
SAVED_BEFORE: dict[str, Any] = {"intensity_scale": intensity_scale(DataConfig())}


def load_segmenter(directory: str | Path, *, kind: str, expect: Mapping[str, Any], what: str, option: str
                   ) -> tuple[nn.Module, dict[str, Any]]:
    """Load :func:`save_segmenter`'s folder (eval mode, on the CPU) and its recipe. Refuses another
    ``kind``, or a recipe whose value of a key of ``expect`` differs (modalities, grid, spacing,
    ...): that net would measure something else. ``what`` and ``option`` name it in the error."""
    import json

    from safetensors.torch import load_file

    from medidiff.errors import DataError

    d = Path(directory)
    try:
        meta = json.loads((d / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(d / "config.json", f"not a saved {what} ({exc})") from exc
    if meta.get("kind") != kind:
        raise DataError(d / "config.json", f"kind {meta.get('kind')!r}, expected {kind!r}: not a saved {what}")
    r = meta["recipe"]
    for key, want in expect.items():
        got = r.get(key, SAVED_BEFORE.get(key))
        if (list(got) if isinstance(got, (list, tuple)) else got) != (list(want) if isinstance(want, (list, tuple)) else want):
            raise DataError(d / "config.json", f"the {what} was trained for {key} {got}, this evaluation uses {want}: "
                                               f"its outputs are not comparable; use another {option}")
    # an exclusive net has a background logit beside its classes (nets saved before it: regions)
    out_channels = len(REGION_NAMES) + (1 if r.get("exclusive") else 0)
    model = build_segmenter(len(r["modalities"]), int(r["init_filters"]), out_channels)
    model.load_state_dict(load_file(str(d / "model.safetensors")))
    return model.eval(), r


@dataclass
class TrainingHistory:
    """How a segmenter's training ended: the budget used and the validation curve."""

    epochs: int  # epochs run
    steps: int  # optimiser steps taken
    best_epoch: int  # 1-based epoch whose weights were kept (0: no validation, the last ones)
    best_val_dice: float  # mean WT/TC/ET Dice on the validation cases at best_epoch (nan: none)
    stopped: str  # "plateau", "max_epochs" or "max_steps"
    val_dice: list[float]  # per epoch
    train_cases: int
    val_cases: int


def _val_split(n: int, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train index, val index): ``round(n * fraction)`` cases (>= 1 when fraction > 0 and n >= 2)
    drawn by a seeded permutation, so every set and seed validates on its own held-back cases."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(10_000 + seed))
    k = 0 if fraction <= 0 or n < 2 else min(n - 1, max(1, round(n * fraction)))
    return perm[k:].sort().values, perm[:k].sort().values


def train_segmenter(
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    epochs: int,
    batch_size: int,
    seed: int,
    lr: float = 1e-3,
    weight_decay: float = 1e-5,
    init_filters: int = 8,
    val_fraction: float = 0.2,
    patience: int = 10,
    min_delta: float = 0.002,
    max_steps: int | None = None,
    threshold: float = 0.5,
    exclusive: bool = False,
    device: str | torch.device = "cpu",
    progress: bool = True,
    desc: str = "segmenter",
) -> tuple[nn.Module, TrainingHistory]:
    """Train a SegResNet on ``images`` (N, C, X, Y, Z) in [-1, 1] and ``labels`` (N, 3, X, Y, Z).

    ``labels`` are overlapping regions (WT/TC/ET: a sigmoid per channel) unless ``exclusive``: then
    they are one-hot classes that never overlap (tissue CSF/GM/WM), the net gets a background logit
    and a softmax over all, and :func:`predict` with ``exclusive`` takes the most probable class.
    Sigmoid channels let a small class lose every voxel to a large neighbour: the tissue segmenter
    trained that way never predicted CSF (quality_wdm_20261130).

    Budget in epochs (one epoch = every training case once, shuffled) with a plateau stop: a
    ``val_fraction`` of the cases is held back, their mean region Dice is measured after every
    epoch, and training stops when it has not improved by ``min_delta`` for ``patience`` epochs;
    the best epoch's weights are returned. A fixed step count (the old budget) stopped the
    recorded run's segmenters at loss ~0.97, far from converged, and made the seed decide
    (TC Dice 0.28 / 0.95 / 0.87 on identical data). ``max_steps`` caps optimiser steps (tests).
    The seed fixes the split, the initial weights and the batch order.
    """
    import copy

    from monai.losses import DiceCELoss
    from tqdm.auto import tqdm

    if images.shape[0] != labels.shape[0] or images.shape[0] < 1:
        raise ValueError(f"images {tuple(images.shape)} and labels {tuple(labels.shape)} must hold the same N >= 1 cases")
    bad = [s for s in images.shape[2:] if s % 8]
    if bad:
        raise ValueError(f"SegResNet halves the grid 3 times: spatial shape {tuple(images.shape[2:])} must be a multiple of 8 (set data.roi)")
    if epochs < 1 or patience < 1:
        raise ValueError(f"epochs and patience must be >= 1, got {epochs}, {patience}")
    device = torch.device(device)
    tr, va = _val_split(images.shape[0], val_fraction, seed)
    torch.manual_seed(seed)
    model = build_segmenter(images.shape[1], init_filters, labels.shape[1] + (1 if exclusive else 0)).to(device)
    # sigmoid per region (overlapping WT/TC/ET); softmax over background + classes when they exclude each other
    loss_fn = DiceCELoss(softmax=True, smooth_nr=1e-5, smooth_dr=1e-5) if exclusive else \
        DiceCELoss(sigmoid=True, smooth_nr=1e-5, smooth_dr=1e-5)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    per_epoch = math.ceil(len(tr) / batch_size)
    total = epochs * per_epoch if max_steps is None else min(epochs * per_epoch, max_steps)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(total, 1))
    gen = torch.Generator().manual_seed(seed)
    best, best_epoch, best_state, curve = -1.0, 0, None, []
    steps, stopped = 0, "max_epochs"
    bar = tqdm(range(epochs), desc=desc, unit="epoch", disable=not progress, leave=False)
    for epoch in bar:
        model.train()
        order = tr[torch.randperm(len(tr), generator=gen)]
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            target = labels[idx].to(device).float()
            if exclusive:  # the background channel the softmax needs
                target = torch.cat([1 - target.amax(1, keepdim=True), target], 1)
            loss = loss_fn(model(images[idx].to(device)), target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            steps += 1
            if max_steps is not None and steps >= max_steps:
                break
        if len(va):
            pred = predict(model, images[va], threshold=threshold, batch_size=batch_size, exclusive=exclusive)
            d = float(_dice(pred, labels[va]).mean())
            curve.append(d)
            if d > best + min_delta or best_state is None:
                best, best_epoch, best_state = d, epoch + 1, copy.deepcopy(model.state_dict())
            bar.set_postfix(loss=f"{loss.item():.3f}", val_dice=f"{d:.3f}")
            if epoch + 1 - best_epoch >= patience:
                stopped = "plateau"
                break
        if max_steps is not None and steps >= max_steps:
            stopped = "max_steps"
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return model, TrainingHistory(epochs=epoch + 1, steps=steps, best_epoch=best_epoch,
                                  best_val_dice=best if best_state is not None else float("nan"), stopped=stopped,
                                  val_dice=curve, train_cases=len(tr), val_cases=len(va))


def _dice(pred: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """(N, R) Dice with the BraTS empty rules (both empty 1, one empty 0), as DiceMetric(ignore_empty=False)."""
    from monai.metrics import DiceMetric

    return DiceMetric(include_background=True, reduction="none", ignore_empty=False)(pred.float(), truth.float())


@torch.no_grad()
def predict(
    model: nn.Module, images: torch.Tensor, *, threshold: float = 0.5, batch_size: int = 2,
    device: str | torch.device | None = None, exclusive: bool = False,
) -> torch.Tensor:
    """(N, C, X, Y, Z) -> (N, K, X, Y, Z) bool masks: sigmoid > ``threshold`` per region, or, for an
    ``exclusive`` net (background + K class logits), the most probable class's one-hot."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.eval()
    out = []
    for start in range(0, images.shape[0], batch_size):
        logits = model(images[start:start + batch_size].to(device))
        if exclusive:
            best = logits.argmax(1, keepdim=True)
            classes = torch.arange(1, logits.shape[1], device=best.device).view(1, -1, *([1] * (logits.ndim - 2)))
            out.append((best == classes).cpu())
        else:
            out.append((torch.sigmoid(logits) > threshold).cpu())
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
    away: bool = False,
) -> SegScores:
    """Dice and HD``percentile`` of (N, R, X, Y, Z) binary ``pred`` vs ``truth`` (see module doc); with
    ``away``, also the volume away from the label."""
    from monai.metrics import HausdorffDistanceMetric

    if pred.shape != truth.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and truth {tuple(truth.shape)} differ in shape")
    p, t = pred.float(), truth.float()
    dice = _dice(p, t)
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
    return SegScores(dice.double().cpu().numpy(), hd, undefined, ids, away_volume_ml(p, t, spacing) if away else None)


def voxel_ml(spacing: Sequence[float]) -> float:
    """The volume of one voxel of ``spacing`` (mm) in mL."""
    return math.prod(float(s) for s in spacing) / 1000.0


def away_volume_ml(pred: torch.Tensor, truth: torch.Tensor, spacing: Sequence[float], margin: int = AWAY_MARGIN
                   ) -> np.ndarray:
    """(N, R) mL of (N, R, X, Y, Z) ``pred`` farther than ``margin`` voxels (Chebyshev, in voxels: 4 mm
    at 2 mm spacing, uneven on anisotropic grids) from ``truth``: all of it where ``truth`` is empty."""
    pool = torch.nn.functional.max_pool3d
    out = np.zeros(tuple(truth.shape[:2]))
    for i in range(truth.shape[0]):  # a case at a time: 192 cases x 3 regions at once held ~2.5 GB more
        near = truth[i].float()[:, None]  # (R, 1, X, Y, Z)
        for axis in range(3):  # the box dilation as three 1-D passes (15 comparisons a voxel, not 125)
            k = [1, 1, 1]
            k[axis] = 2 * margin + 1
            near = pool(near, tuple(k), stride=1, padding=tuple(v // 2 for v in k))
        away = pred[i].bool() & ~(near[:, 0] > 0)
        out[i] = away.flatten(1).sum(-1).double().cpu().numpy()
    return out * voxel_ml(spacing)


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
    away: bool = False,
    on_prediction: Callable[[torch.Tensor], None] | None = None,
) -> SegScores:
    """Segment ``images`` and score against ``truth`` (N, 3, X, Y, Z) (``away``: :func:`segmentation_scores`);
    ``on_prediction`` receives the (N, 3, X, Y, Z) bool masks before they are scored."""
    pred = predict(model, images, threshold=threshold, batch_size=batch_size)
    if on_prediction is not None:
        on_prediction(pred)
    return segmentation_scores(pred, truth, spacing, percentile=percentile, case_ids=case_ids, away=away)


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
