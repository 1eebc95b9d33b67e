"""Bootstrap intervals and the segmenter's epoch budget with a plateau stop (issue 14)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medidiff.config import ConfigError
from medidiff.eval.segmentation import predict, train_segmenter
from medidiff.eval.segmentation import _dice as region_dice
from medidiff.eval.stats import bootstrap_ci, summarise_matrix


def test_bootstrap_of_a_constant_is_a_point_and_of_noise_matches_the_standard_error():
    mean, lo, hi = bootstrap_ci(np.full((3, 10), 0.7))
    assert (mean, lo, hi) == pytest.approx((0.7, 0.7, 0.7))
    rng = np.random.default_rng(0)
    v = rng.normal(0.0, 1.0, size=(1, 400))  # one seed: the plain case bootstrap
    mean, lo, hi = bootstrap_ci(v, resamples=4000)
    se = v.std(ddof=1) / np.sqrt(400)
    assert (hi - lo) / 2 == pytest.approx(1.96 * se, rel=0.15) and lo < mean < hi
    # seed-to-seed spread widens the interval: the seeds are resampled too
    shifted = v + np.array([[-0.5], [0.0], [0.5]])
    _, lo3, hi3 = bootstrap_ci(shifted, resamples=4000)
    assert hi3 - lo3 > 2 * (hi - lo)
    s = summarise_matrix(shifted, resamples=500)
    assert s["std_over_seeds"] == pytest.approx(0.5, rel=0.01) and s["ci95"][0] <= s["mean"] <= s["ci95"][1]
    with pytest.raises(ValueError, match="finite"):
        bootstrap_ci(np.array([[1.0, np.inf]]))


def _blobs(n: int, side: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, 4, side^3) images with a bright ball whose position varies; regions = the ball (WT=TC=ET)."""
    g = torch.Generator().manual_seed(seed)
    grid = torch.stack(torch.meshgrid(*[torch.arange(side, dtype=torch.float32)] * 3, indexing="ij"))
    imgs, labs = [], []
    for _ in range(n):
        c = 4 + torch.rand(3, generator=g) * (side - 8)
        ball = ((grid - c[:, None, None, None]) ** 2).sum(0) < 9
        x = torch.where(ball, 0.8, -0.5) + 0.05 * torch.randn(side, side, side, generator=g)
        imgs.append(x.expand(4, -1, -1, -1).clone())
        labs.append(ball.expand(3, -1, -1, -1).clone())
    return torch.stack(imgs), torch.stack(labs)


def test_plateau_stop_keeps_the_best_epoch_and_ends_patience_epochs_after_it():
    torch.set_num_threads(1)
    x, y = _blobs(5)
    # min_delta 1: no epoch after the first can count as a gain, so training must stop at 1 + patience
    model, h = train_segmenter(x, y, epochs=50, batch_size=2, seed=0, init_filters=4, patience=2,
                               min_delta=1.0, val_fraction=0.4, progress=False)
    assert h.stopped == "plateau" and h.best_epoch == 1 and h.epochs == 3
    assert h.val_cases == 2 and h.train_cases == 3 and len(h.val_dice) == 3 and h.steps == 3 * 2
    # the returned weights are the best epoch's: they reproduce its validation Dice
    from medidiff.eval.segmentation import _val_split

    _, va = _val_split(5, 0.4, 0)
    d = float(region_dice(predict(model, x[va]), y[va]).mean())
    assert d == pytest.approx(h.val_dice[0], abs=1e-6) and h.best_val_dice == pytest.approx(h.val_dice[0])


def test_epoch_budget_and_step_cap():
    x, y = _blobs(4)
    _, h = train_segmenter(x, y, epochs=2, batch_size=2, seed=1, init_filters=4, patience=5, progress=False)
    assert h.stopped == "max_epochs" and h.epochs == 2 and h.steps == 2 * 2  # 3 training cases, batch 2
    _, h = train_segmenter(x, y, epochs=9, batch_size=1, seed=1, init_filters=4, max_steps=4, val_fraction=0.0,
                           progress=False)
    assert h.stopped == "max_steps" and h.steps == 4 and h.val_cases == 0 and np.isnan(h.best_val_dice)


def test_convergence_benchmark_script_runs_and_records(tmp_path, monkeypatch):
    import json
    import runpy
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "benchmarks" / "segmenter_convergence.py"
    monkeypatch.setattr(sys, "argv", [str(script), "--out", str(tmp_path), "--cases", "4", "--folds", "2",
                                      "--shape", "32", "32", "32", "--seeds", "0", "--set", "eval.epochs=1"])
    runpy.run_path(str(script), run_name="__main__")
    rec = json.loads((tmp_path / "segmenter_convergence.json").read_text())
    assert rec["grid"] == [16, 16, 16] and rec["spacing_mm"] == [2.0, 2.0, 2.0]
    assert rec["seeds"][0]["training"]["epochs"] == 1 and 0.0 <= rec["wt_dice_mean"] <= 1.0


def test_a_saved_feature_net_of_another_intensity_scale_is_refused_and_older_ones_read_as_the_default(tmp_path):
    """A net trained on one intensity scale (data.percentile_region / percentile_top) reads another's images
    wrongly: its features would not compare. Nets saved before the scale was recorded were all trained on the
    default, and still load for it."""
    import json

    from medidiff.data.config import DataConfig, check_scale_labels, intensity_scale
    from medidiff.errors import DataError
    from medidiff.eval import features as feat
    from medidiff.eval.segmentation import build_segmenter

    where = {"modalities": ["t1n"], "grid": [8, 8, 8], "spacing": [2.0, 2.0, 2.0]}
    recipe = {"modalities": ["t1n"], "grid": [8, 8, 8], "spacing_mm": [2.0, 2.0, 2.0], "init_filters": 4}
    shipped, out_top0 = DataConfig(), DataConfig(percentile_region="outside_tumour", percentile_top=0.0)
    net = build_segmenter(1, 4)
    feat.save_segmenter_features(net, tmp_path / "new", {**recipe, "intensity_scale": intensity_scale(out_top0)})
    feat.load_segmenter_features(tmp_path / "new", **where, intensity=intensity_scale(out_top0))
    with pytest.raises(DataError, match="intensity_scale"):
        feat.load_segmenter_features(tmp_path / "new", **where, intensity=intensity_scale(shipped))
    feat.save_segmenter_features(net, tmp_path / "old", recipe)  # no scale recorded
    assert "intensity_scale" not in json.loads((tmp_path / "old" / "config.json").read_text())["recipe"]
    feat.load_segmenter_features(tmp_path / "old", **where, intensity=intensity_scale(shipped))
    with pytest.raises(DataError, match="intensity_scale"):
        feat.load_segmenter_features(tmp_path / "old", **where, intensity=intensity_scale(out_top0))
    # a pipeline that loads no labels cannot scale outside the tumour: refused, not scaled over the brain
    check_scale_labels(shipped, False, "x")
    check_scale_labels(out_top0, True, "x")
    with pytest.raises(ConfigError, match="an image-only model loads none"):
        check_scale_labels(out_top0, False, "an image-only model")
