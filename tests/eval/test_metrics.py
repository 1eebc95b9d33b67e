"""Known answers for the segmentation and image metrics."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from medidiff.eval.image_metrics import (
    PRDC_FLOOR_DRAWS,
    feature_distances,
    floor_at_count,
    frechet_difference,
    frechet_jackknife,
    frechet_distance,
    frechet_distance_from_stats,
    frechet_reading,
    mmd2,
    ms_ssim,
    prdc,
    prdc_floor,
    prdc_reading,
    ms_ssim_diversity,
    msssim_settings,
    psnr,
    ssim,
)
from medidiff.eval.report import bar_chart, jsonable, line_chart
from medidiff.eval.segmentation import aggregate_seeds, segmentation_scores, summarise_scores, volume_diagonal


def _cube(shape=(12, 12, 12), lo=(4, 4, 4), size=4) -> torch.Tensor:
    m = torch.zeros(shape, dtype=torch.bool)
    m[lo[0]:lo[0] + size, lo[1]:lo[1] + size, lo[2]:lo[2] + size] = True
    return m


def test_dice_identical_disjoint_and_shifted_by_hand():
    a = _cube()
    disjoint = _cube(lo=(0, 0, 0), size=3)
    shifted = _cube(lo=(5, 4, 4))  # one voxel along x: overlap 3*4*4 = 48 of 64 + 64
    pred = torch.stack([a, disjoint, shifted])[:, None]  # (3, 1, X, Y, Z)
    truth = torch.stack([a, a, a])[:, None]
    s = segmentation_scores(pred, truth, (1.0, 1.0, 1.0))
    np.testing.assert_allclose(s.dice[:, 0], [1.0, 0.0, 2 * 48 / 128])
    assert s.hd95[0, 0] == 0.0 and not s.undefined.any()
    assert s.hd95[1, 0] > 0 and 0 < s.hd95[2, 0] <= 1.0 + 1e-6


def test_hd95_uses_spacing_in_mm():
    a, shifted = _cube(), _cube(lo=(5, 4, 4))
    one = segmentation_scores(shifted[None, None], a[None, None], (1.0, 1.0, 1.0)).hd95[0, 0]
    two = segmentation_scores(shifted[None, None], a[None, None], (2.0, 1.0, 1.0)).hd95[0, 0]
    assert two == pytest.approx(2 * one)


def test_empty_masks_follow_the_documented_rule():
    a = _cube()
    empty = torch.zeros_like(a)
    pred = torch.stack([empty, a, empty])[:, None]
    truth = torch.stack([a, empty, empty])[:, None]
    s = segmentation_scores(pred, truth, (1.0, 1.0, 2.0))
    diag = volume_diagonal((12, 12, 12), (1.0, 1.0, 2.0))
    assert diag == pytest.approx(math.sqrt(12**2 + 12**2 + 24**2))
    np.testing.assert_allclose(s.dice[:, 0], [0.0, 0.0, 1.0])
    np.testing.assert_allclose(s.hd95[:, 0], [diag, diag, 0.0])
    assert s.undefined[:, 0].tolist() == [True, True, False]


def test_summary_and_seed_aggregation():
    a = _cube()
    pred = torch.stack([a, a, a])[None].repeat(2, 1, 1, 1, 1)  # (2, 3, X, Y, Z)
    truth = pred.clone()
    truth[1, 2] = False  # case 1: ET predicted but absent -> Dice 0, HD95 penalised
    summ = summarise_scores(segmentation_scores(pred, truth, (1, 1, 1)))
    assert summ["WT"]["dice"] == 1.0 and summ["ET"]["dice"] == 0.5 and summ["ET"]["hd95_undefined"] == 1
    agg = aggregate_seeds([summ, summ])
    assert agg["ET"]["dice_mean"] == 0.5 and agg["ET"]["dice_std"] == 0.0 and agg["ET"]["hd95_undefined"] == 2


def test_ms_ssim_of_identical_volumes_is_one_and_lower_for_different():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 2, 32, 32, 24, generator=g) * 2 - 1
    assert torch.allclose(ms_ssim(x, x), torch.ones(2), atol=1e-5)
    assert ms_ssim(x[:1], x[1:]).item() < 0.5
    assert torch.allclose(ssim(x, x), torch.ones(2), atol=1e-5)
    div = ms_ssim_diversity(torch.cat([x[:1]] * 3), pairs=5)
    assert div["mean"] == pytest.approx(1.0, abs=1e-5) and div["pairs"] == 3


def test_msssim_settings_fit_monai_limits():
    s = msssim_settings((128, 128, 128))
    assert (s["scales"], s["kernel_size"]) == (5, 7)
    small = msssim_settings((32, 32, 24))
    assert small["scales"] < 5 and sum(small["weights"]) == pytest.approx(1.0)
    side = 24
    assert side // max(1, small["scales"] - 1) ** 2 > small["kernel_size"] - 1  # MONAI's own check passes
    with pytest.raises(ValueError):
        msssim_settings((2, 8, 8))


def test_psnr_identical_is_inf_and_json_safe():
    x = torch.zeros(2, 1, 4, 4, 4)
    y = x.clone()
    y[1] += 0.1
    p = psnr(x, y)
    assert math.isinf(p[0]) and p[1].item() == pytest.approx(10 * math.log10(4 / 0.01))
    text = json.dumps(jsonable({"psnr": p.tolist()}), allow_nan=False)
    assert json.loads(text)["psnr"][0] == "inf"


def test_mmd_identical_zero_shifted_positive_and_linear_equals_monai():
    from monai.metrics import MMDMetric

    g = torch.Generator().manual_seed(1)
    a = torch.randn(40, 8, generator=g, dtype=torch.float64)
    b = torch.randn(40, 8, generator=g, dtype=torch.float64)
    assert mmd2(a, a) == pytest.approx(0.0, abs=1e-12)
    assert mmd2(a, a + 2.0) > 10 * abs(mmd2(a, b))
    ours = mmd2(a, b, kernel="linear", unbiased=True)
    assert ours == pytest.approx(float(MMDMetric()(a, b)), rel=1e-9, abs=1e-12)
    with pytest.raises(ValueError):
        mmd2(a[:1], b, unbiased=True)


def _closed_form(mu1, s1, mu2, s2) -> float:
    """|mu1-mu2|^2 + tr(S1 + S2 - 2 (S1^1/2 S2 S1^1/2)^1/2) via eigh (independent of scipy's sqrtm)."""
    def psd_sqrt(m):
        w, v = np.linalg.eigh(m)
        return (v * np.sqrt(np.clip(w, 0, None))) @ v.T

    r1 = psd_sqrt(s1)
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(psd_sqrt(r1 @ s2 @ r1)))


def test_frechet_matches_closed_form_for_gaussians():
    rng = np.random.default_rng(0)
    mu1, mu2 = np.array([0.0, 1.0, -1.0]), np.array([0.5, 0.0, 1.0])
    a1, a2 = rng.normal(size=(3, 3)), rng.normal(size=(3, 3))
    s1, s2 = a1 @ a1.T + 0.1 * np.eye(3), a2 @ a2.T + 0.1 * np.eye(3)  # full, non-commuting
    exact = _closed_form(mu1, s1, mu2, s2)
    assert frechet_distance_from_stats(mu1, s1, mu2, s2) == pytest.approx(exact, rel=1e-8)
    # diagonal covariances: |dmu|^2 + sum (sqrt a - sqrt b)^2
    d1, d2 = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 9.0])
    assert frechet_distance_from_stats(mu1, np.diag(d1), mu2, np.diag(d2)) == pytest.approx(
        np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(d1) - np.sqrt(d2)) ** 2))
    # from samples: converges to the closed form
    x = rng.multivariate_normal(mu1, s1, size=40000)
    y = rng.multivariate_normal(mu2, s2, size=40000)
    assert frechet_distance(x, y) == pytest.approx(exact, rel=0.05)
    assert frechet_distance(x[:500], x[:500]) == pytest.approx(0.0, abs=1e-6)
    assert frechet_distance(x[:500], x[:500] + 1.0) == pytest.approx(3.0, rel=1e-6)


def test_the_floor_is_taken_at_the_synthetic_count_and_a_collapsed_set_stays_above_it():
    """Frechet falls as a sample grows: 8 good synthetic cases (drawn like the real ones) beside a floor of
    all 99 held-out cases looked several times the floor. At equal count they sit inside the floor's
    spread; 8 near-copies of one case stay far above it."""
    rng = np.random.default_rng(0)
    dim = 6
    train, heldout = rng.normal(size=(285, dim)), rng.normal(size=(99, dim))
    good = [frechet_distance(rng.normal(size=(8, dim)), train) for _ in range(20)]
    floor = floor_at_count(heldout, train, 8, draws=20, seed=0)
    assert floor["n"] == [8, 285] and floor["draws"] == 20
    lo, hi = floor["frechet_range"]
    assert lo <= floor["frechet"] <= hi
    assert 0.5 < np.median(good) / floor["frechet"] < 2.0  # equal counts: the same distribution scores alike
    at_all = feature_distances(heldout, train)["frechet"]
    assert np.median(good) / at_all > 3.0  # what the old floor (all held-out cases) made of good cases
    collapsed = heldout[:1] + 0.05 * rng.normal(size=(8, dim))
    assert frechet_distance(collapsed, train) > 2 * hi
    # one draw when the held-out set is no larger than the synthetic one; each subset once when there are
    # no more than `draws` of them (C(9, 8) = 9); one draw is still a random subset; reproducible per seed
    assert floor_at_count(heldout[:8], train, 8, draws=20, seed=0)["draws"] == 1
    assert floor_at_count(heldout[:9], train, 8, draws=20, seed=0)["draws"] == 9
    assert floor_at_count(heldout, train, 8, draws=1, seed=0) != floor_at_count(heldout, train, 8, draws=1, seed=1)
    assert floor_at_count(heldout, train, 8, draws=20, seed=0) == floor
    # the report's reading: good cases fall inside the floor's spread, the collapsed set above all of it
    inside = frechet_reading({"frechet": float(np.clip(np.median(good), lo, hi))}, floor)
    assert inside["within_floor_range"] and "cannot separate" in inside["reading"]
    above = frechet_reading({"frechet": frechet_distance(collapsed, train)}, floor)
    assert not above["within_floor_range"] and "above every real subset" in above["reading"]
    assert above["ratio_to_floor_median"] > 2 * hi / floor["frechet"]
    assert frechet_reading({"frechet": 1.0}, {"note": "too few cases"}) is None


def test_the_jackknife_interval_holds_another_draw_and_separates_a_broken_generator():
    """One draw of 64 generated cases is noisy (the shipped feature net's size: 90 dimensions against 192 real
    cases). The interval from one draw holds the median Frechet of fresh draws from the same generator, is about
    as wide as their spread, and a generator with a collapsed, shifted mode reads an interval wholly above a
    good one's."""
    rng = np.random.default_rng(0)
    dim = 90
    mix = rng.normal(size=(dim, dim)) / np.sqrt(dim)
    shift = np.zeros(dim)
    shift[:10] = 0.8

    def generator(n: int, scale: float = 1.3) -> np.ndarray:
        return (rng.normal(size=(n, dim)) * scale) @ mix + shift

    reference = rng.normal(size=(192, dim)) @ mix
    fresh = [frechet_distance(generator(64), reference) for _ in range(40)]
    centre, spread = np.median(fresh), np.subtract(*np.percentile(fresh, [97.5, 2.5]))
    held = 0
    for _ in range(10):
        one = generator(64)
        jack = frechet_jackknife(one, reference)
        lo, hi = jack["frechet_interval"]
        assert jack["jackknife_cases"] == 64 and lo <= frechet_distance(one, reference) <= hi
        assert 0.5 < (hi - lo) / spread < 2.0
        held += lo <= centre <= hi
    assert held >= 8
    good = frechet_jackknife(generator(64), reference)["frechet_interval"]
    collapsed = generator(1) + 0.2 * generator(64, scale=0.2) + 0.5  # near-copies of one case, off the mode
    broken = frechet_jackknife(collapsed, reference)["frechet_interval"]
    assert broken[0] > good[1]
    assert "note" in frechet_jackknife(generator(2), reference)  # two cases leave one: no Frechet to take
    with pytest.raises(ValueError, match="not whole cases"):
        frechet_jackknife(generator(10), reference, rows_per_case=4)


def test_precision_recall_and_coverage_name_off_manifold_narrow_and_collapsed_generators_and_pass_real_draws():
    """The shipped feature net's size (90 correlated dimensions, 32 synthetic cases against 256 real, the floor
    from 100 subsets of 128 held-out): fresh draws of the real distribution pass in nearly every trial; a
    generator off the manifold (every feature moved by 1.5 of its spread) fails precision; near-copies of one
    case fail coverage and recall; a set of half the real spread fails recall alone (in 90 dimensions it sits
    inside every real ball: coverage 1, density far above the floor's)."""
    rng = np.random.default_rng(0)
    dim = 90
    mix = rng.normal(size=(dim, dim)) / np.sqrt(dim)

    def real(n: int, scale: float = 1.0, shift: float = 0.0) -> np.ndarray:
        return (rng.normal(size=(n, dim)) * scale + shift) @ mix

    reference, held = real(256), real(128)
    floor = prdc_floor(held, reference, 32, draws=PRDC_FLOOR_DRAWS, seed=0)
    assert floor["draws"] == 100 and floor["precision_range"][0] <= floor["precision"] <= floor["precision_range"][1]
    passed = [prdc_reading(prdc(real(32), reference), floor)["pass"] for _ in range(40)]
    assert sum(passed) >= 36
    off = prdc_reading(prdc(real(32, shift=1.5), reference), floor)
    assert not off["precision_pass"] and "below every real subset" in off["reading"]
    copies = prdc_reading(prdc(real(1) + 0.05 * real(32), reference), floor)
    assert not copies["coverage_pass"] and not copies["recall_pass"]  # (precision: whether that one case is on it)
    narrow = prdc(real(32, scale=0.5), reference)
    reading = prdc_reading(narrow, floor)
    assert reading["precision_pass"] and reading["coverage_pass"] and not reading["recall_pass"] and not reading["pass"]
    assert narrow["density"] > floor["density_range"][1] and "packed" in reading["reading"]
    assert "note" in prdc(real(5), reference)  # no 5th neighbour among 5 cases
    # subsets that share most of their cases are no yardstick: no verdict
    few = prdc_reading(prdc(real(32), reference), prdc_floor(held[:48], reference, 32, draws=PRDC_FLOOR_DRAWS, seed=0))
    assert "pass" not in few and "no verdict" in few["reading"]


def test_the_difference_of_two_runs_separates_a_small_defect_and_not_two_draws_of_one_generator():
    """Runs of one job compare by the difference's interval: a generator whose mode is shifted a little (its
    Frechet ~3 standard errors above the good one's, at the median) reads farther from real; two draws
    of one generator mostly read no difference (about 5 % of pairs may, by construction)."""
    rng = np.random.default_rng(3)
    dim = 90
    mix = rng.normal(size=(dim, dim)) / np.sqrt(dim)
    reference = rng.normal(size=(192, dim)) @ mix

    def row(shift: float) -> dict:
        x = rng.normal(size=(64, dim)) @ mix
        x[:, :5] += shift
        return {"frechet": frechet_distance(x, reference), **frechet_jackknife(x, reference)}

    same = [frechet_difference(row(0.0), row(0.0)) for _ in range(20)]
    assert sum(d["interval"][0] <= 0 <= d["interval"][1] for d in same) >= 17
    shifted = [frechet_difference(row(1.0), row(0.0)) for _ in range(10)]
    gaps = [d["difference"] / ((d["interval"][1] - d["interval"][0]) / (2 * 1.96)) for d in shifted]
    assert 2 < np.median(gaps) < 6  # a defect of a few standard errors, not a gross one
    assert sum(d["interval"][0] > 0 for d in shifted) >= 7
    assert frechet_difference({"frechet": 1.0}, row(0.0)) is None  # an old report's row: no error, no verdict
    assert frechet_difference(row(0.0), {**row(0.0), "jackknife_cases": 32}) is None  # another count
    # runs drawn for the same label maps err together: case i of both carries a shared part. The paired
    # difference (case i left out of both) sees it, and is narrower than the independent reading
    shared = rng.normal(size=(64, dim)) @ mix

    def related(shift: float) -> dict:
        x = shared + 0.3 * rng.normal(size=(64, dim)) @ mix
        x[:, :5] += shift
        return {"frechet": frechet_distance(x, reference), **frechet_jackknife(x, reference)}

    a, b = related(1.0), related(0.0)
    paired = frechet_difference(a, b)
    alone = frechet_difference({k: v for k, v in a.items() if k != "frechet_leave_one_out"}, b)
    assert paired["paired"] and not alone["paired"] and paired["difference"] == alone["difference"]
    assert np.diff(paired["interval"])[0] < 0.7 * np.diff(alone["interval"])[0]


def test_the_jackknife_leaves_out_a_cases_slab_rows_together():
    """2.5D features come as rows_per_case consecutive rows a case: leaving a case out leaves all of them out,
    so a case given as four identical rows reads as that case once, not as four cases."""
    rng = np.random.default_rng(2)
    cases, per, dim = 12, 4, 3
    x, y = rng.normal(size=(cases, dim)), rng.normal(size=(40, dim))
    slabs = np.repeat(x, per, axis=0) + 1e-9 * rng.normal(size=(cases * per, dim))
    by_case, by_slab = frechet_jackknife(x, y), frechet_jackknife(slabs, y, rows_per_case=per)
    assert by_slab["jackknife_cases"] == cases
    # four copies of a case change the covariance's normalisation only: the spreads agree closely
    assert by_slab["frechet_se"] == pytest.approx(by_case["frechet_se"], rel=0.1)
    # read as 48 independent cases the copies understate the spread by about sqrt(4)
    one_row = frechet_jackknife(slabs, y)
    assert one_row["frechet_se"] < 0.7 * by_case["frechet_se"]


def test_slabs_come_as_consecutive_rows_a_case():
    """The floor and the jackknife take a case's 2.5D rows as ``count`` consecutive rows: pin that layout."""
    from medidiff.eval.features import slabs

    cases, count = 3, 4
    images = torch.arange(cases, dtype=torch.float32).view(cases, 1, 1, 1, 1).expand(cases, 1, 16, 16, 16)
    rows = slabs(images, axis=2, thickness=2, count=count)
    assert rows.shape[0] == cases * count
    assert [int(r[0, 0, 0, 0]) for r in rows] == [c for c in range(cases) for _ in range(count)]


def test_the_floor_keeps_each_cases_slab_rows_together(monkeypatch):
    """2.5D features come as rows_per_case consecutive rows per case: a subset takes whole cases."""
    import medidiff.eval.image_metrics as im

    cases, per = 30, 4
    x = np.stack([np.repeat(np.arange(cases), per).astype(np.float64),
                  np.random.default_rng(1).normal(size=cases * per)], 1)  # column 0: the row's case
    seen, real = [], im.feature_distances
    monkeypatch.setattr(im, "feature_distances", lambda a, b: seen.append(np.asarray(a)[:, 0]) or real(a, b))
    floor_at_count(x, x, 5, draws=3, seed=0, rows_per_case=per)
    assert len(seen) == 3
    for rows in seen:
        assert len(rows) == 5 * per and len(set(rows.tolist())) == 5
        assert all((rows[i * per:(i + 1) * per] == rows[i * per]).all() for i in range(5))


def test_bar_chart_draws_bars_proportional_to_values():
    img = bar_chart(["WT", "TC"], ["real", "synthetic"], np.array([[1.0, 0.5], [0.25, np.nan]]),
                    np.array([[0.1, 0.0], [0.0, 0.0]]), title="dice", ymax=1.0)
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
    plot = img[:22 + 220]  # above the x axis (the legend swatches are below it)
    blue = np.all(plot == (52, 101, 164), axis=2).sum(0)
    heights = sorted({int(h) for h in blue if h > 0})
    # WT/real = 1.0 fills the 220 px axis, TC/real = 0.25 a quarter (the std whisker hides a few pixels)
    assert heights[0] == 55 and heights[-1] == 220
    orange = np.all(plot == (245, 121, 0), axis=2).sum(0)
    assert sorted({int(h) for h in orange if h > 0}) == [110]  # TC/synthetic is nan: no bar


def test_line_chart_maps_the_data_range_onto_the_plot_box():
    # y = 10, 100, 1000 on a log axis: a straight line from the bottom-left to the top-right corner
    img = line_chart({"loss": ([0, 1, 2, np.nan], [10.0, 100.0, 1000.0, 5.0])}, title="loss", log_y=True,
                     width=200, height=100)
    assert img.dtype == np.uint8 and img.shape[1] == 200
    plot = img[:22 + 100 + 1]
    ys, xs = np.nonzero(np.all(plot == (52, 101, 164), axis=2))
    assert (xs.min(), xs.max()) == (64, 64 + 200 - 64 - 12)  # first and last x at the box edges
    assert (ys.min(), ys.max()) == (22, 22 + 100)  # max at the top, min on the axis
    # the NaN point is dropped and log10(y) is linear in x: the pixels lie on one rising line
    assert np.corrcoef(xs, ys)[0, 1] < -0.99


def test_medicalnet_weights_load_from_a_local_file_and_give_per_modality_features(tmp_path):
    from monai.networks.nets import resnet10
    from safetensors.torch import save_file

    from medidiff.eval.features import MedicalNetFeatures, SegmenterFeatures, load_medicalnet, slab_features
    from medidiff.eval.segmentation import build_segmenter

    torch.manual_seed(0)
    net = resnet10(spatial_dims=3, n_input_channels=1, feed_forward=False, shortcut_type="B", bias_downsample=False)
    state = {f"module.{k}": v for k, v in net.state_dict().items()}  # as MedicalNet's DataParallel saves
    torch.save(state, tmp_path / "resnet_10.pth")
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp_path / "r10.safetensors"))
    for name in ("resnet_10.pth", "r10.safetensors"):
        model, depth = load_medicalnet(tmp_path / name)
        assert depth == 10
        assert all(torch.equal(model.state_dict()[k], v) for k, v in net.state_dict().items())
    x = torch.rand(2, 4, 32, 32, 24) * 2 - 1
    fn = MedicalNetFeatures(tmp_path / "r10.safetensors")
    assert fn(x).shape == (2, 4 * 512) and "resnet10" in fn.name
    seg = SegmenterFeatures(build_segmenter(4, 8))
    assert seg(x).shape == (2, 8 * (1 + 2 + 4 + 8))
    slabs = slab_features(seg, x, thickness=8, count=3)
    assert {k: tuple(v.shape) for k, v in slabs.items()} == {a: (6, 120) for a in ("sagittal", "coronal", "axial")}
    (tmp_path / "junk.pth").write_bytes(b"junk")
    from medidiff.errors import DataError

    with pytest.raises(DataError, match="cannot read weights"):
        load_medicalnet(tmp_path / "junk.pth")


class _MedicalNetBasicBlock(torch.nn.Module):
    """Tencent/MedicalNet models/resnet.py BasicBlock, as published (the reference)."""

    expansion = 1

    def __init__(self, inplanes, planes, stride=1, dilation=1, downsample=None):
        super().__init__()
        nn = torch.nn
        self.conv1 = nn.Conv3d(inplanes, planes, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)
        self.bn1 = nn.BatchNorm3d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv3d(planes, planes, 3, stride=1, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm3d(planes)
        self.downsample = downsample

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + (self.downsample(x) if self.downsample is not None else x))


class _MedicalNet10(torch.nn.Module):
    """MedicalNet resnet10, shortcut B, without the segmentation head: layer3/4 stride 1, dilation 2/4."""

    def __init__(self):
        super().__init__()
        nn = torch.nn
        self.inplanes = 64
        self.conv1 = nn.Conv3d(1, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm3d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool3d(3, stride=2, padding=1)
        self.layer1 = self._make_layer(64, 1)
        self.layer2 = self._make_layer(128, 1, stride=2)
        self.layer3 = self._make_layer(256, 1, stride=1, dilation=2)
        self.layer4 = self._make_layer(512, 1, stride=1, dilation=4)

    def _make_layer(self, planes, blocks, stride=1, dilation=1):
        nn = torch.nn
        down = None
        if stride != 1 or self.inplanes != planes:
            down = nn.Sequential(nn.Conv3d(self.inplanes, planes, 1, stride=stride, bias=False), nn.BatchNorm3d(planes))
        layers = [_MedicalNetBasicBlock(self.inplanes, planes, stride, dilation, down)]
        self.inplanes = planes
        layers += [_MedicalNetBasicBlock(planes, planes, dilation=dilation) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return x.mean((2, 3, 4))  # global average pooling, as the feature extractor uses it


def test_medicalnet_is_built_as_the_original_stride_one_and_dilated(tmp_path):
    from safetensors.torch import save_file

    from medidiff.eval.features import load_medicalnet

    torch.manual_seed(0)
    ref = _MedicalNet10().eval()
    for m in ref.modules():  # non-trivial batch-norm statistics, so a wrong layout cannot hide
        if isinstance(m, torch.nn.BatchNorm3d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(tmp_path / "mn10.safetensors"))
    model, depth = load_medicalnet(tmp_path / "mn10.safetensors")
    x = torch.randn(2, 1, 32, 32, 24)
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref(x), rtol=1e-4, atol=1e-5)
    assert model.layer4[0].conv1.dilation == (4, 4, 4) and model.layer3[0].conv1.stride == (1, 1, 1)
