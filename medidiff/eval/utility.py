"""Segmentation utility (train on synthetic, test on real) and mask fidelity.

Utility (Med-DDPM, Dorjsembe et al. 2024, arXiv:2305.18453; MAISI, arXiv:2409.11169): a SegResNet
is trained on each of three sets with the SAME budget (``eval.steps`` steps of ``eval.batch_size``
cases, same seeds) and scored on the held-out REAL split (``data.fold``):

* ``real``: the real training split;
* ``synthetic``: the synthetic cases (their ``seg.nii.gz`` as labels);
* ``real+synthetic``: the union, cases drawn uniformly from it.

Same budget means the comparison is about what the data teaches, not about more optimisation.
Per seed we average Dice/HD95 over held-out cases; the report gives mean and std over seeds.

Mask fidelity: the ``real`` segmenters segment each synthetic case; Dice/HD95 against the case's
own ``seg.nii.gz`` (the conditioning mask of a mask-conditioned model, or the generated label of a
label-generating model) measure whether the images show the tumour the label says.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from medidiff.eval.config import EvalConfig
from medidiff.eval.data import CaseSet
from medidiff.eval.segmentation import (
    aggregate_seeds,
    evaluate_segmenter,
    summarise_scores,
    train_segmenter,
)

__all__ = ["TRAINING_SETS", "SegmenterBank", "utility_experiment", "mask_fidelity"]

TRAINING_SETS: tuple[str, ...] = ("real", "synthetic", "real+synthetic")


class SegmenterBank:
    """Trains each (training set, seed) segmenter once and hands it to every task that needs it."""

    def __init__(self, sets: dict[str, CaseSet], cfg: EvalConfig, *, progress: bool = True) -> None:
        self.sets = sets
        self.cfg = cfg
        self.progress = progress
        self._models: dict[tuple[str, int], nn.Module] = {}

    def _data(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        parts = name.split("+")
        missing = [p for p in parts if p not in self.sets or self.sets[p].labels is None]
        if missing:
            raise ValueError(f"training set {name!r} needs labelled cases of {missing}")
        images = torch.cat([self.sets[p].images for p in parts])
        labels = torch.cat([self.sets[p].labels for p in parts])  # type: ignore[misc]
        return images, labels

    def get(self, name: str, seed: int) -> nn.Module:
        key = (name, int(seed))
        if key not in self._models:
            images, labels = self._data(name)
            c = self.cfg
            self._models[key] = train_segmenter(
                images, labels, steps=c.steps, batch_size=c.batch_size, seed=int(seed), lr=c.lr,
                weight_decay=c.weight_decay, init_filters=c.init_filters, device=c.device,
                progress=self.progress, desc=f"segmenter {name} seed {seed}",
            )
        return self._models[key]


def _scores_over_seeds(
    bank: SegmenterBank, train_name: str, test: CaseSet, cfg: EvalConfig, spacing: Sequence[float]
) -> dict[str, Any]:
    if test.labels is None:
        raise ValueError(f"{test.name}: scoring needs labels")
    per_seed = []
    for seed in cfg.seeds:
        scores = evaluate_segmenter(
            bank.get(train_name, seed), test.images, test.labels, spacing, threshold=cfg.threshold,
            percentile=cfg.hd_percentile, batch_size=cfg.batch_size, case_ids=test.case_ids,
        )
        per_seed.append({"seed": int(seed), "regions": summarise_scores(scores)})
    return {"per_seed": per_seed, "aggregate": aggregate_seeds([p["regions"] for p in per_seed])}


def utility_experiment(
    bank: SegmenterBank, test: CaseSet, cfg: EvalConfig, spacing: Sequence[float]
) -> dict[str, Any]:
    """``{"test_cases", "budget", "training_sets": {name: {"train_cases", "per_seed", "aggregate"}}}``."""
    out: dict[str, Any] = {
        "test_set": test.name,
        "test_cases": len(test),
        "budget": {"steps": cfg.steps, "batch_size": cfg.batch_size, "lr": cfg.lr,
                   "init_filters": cfg.init_filters, "seeds": list(cfg.seeds)},
        "training_sets": {},
    }
    for name in TRAINING_SETS:
        res = _scores_over_seeds(bank, name, test, cfg, spacing)
        res["train_cases"] = sum(len(bank.sets[p]) for p in name.split("+"))
        out["training_sets"][name] = res
    return out


def mask_fidelity(
    bank: SegmenterBank, synthetic: CaseSet, cfg: EvalConfig, spacing: Sequence[float]
) -> dict[str, Any]:
    """Real-trained segmenters on synthetic images vs the synthetic labels."""
    conditioned = sum(1 for p in synthetic.provenance if _mask_conditioned(p))
    res = _scores_over_seeds(bank, "real", synthetic, cfg, spacing)
    res["cases"] = len(synthetic)
    res["mask_conditioned_cases"] = conditioned
    return res


def _mask_conditioned(prov: dict[str, Any]) -> bool:
    """Best effort: provenance that names a conditioning mask."""
    return any("mask" in str(k).lower() and v for k, v in prov.items())
