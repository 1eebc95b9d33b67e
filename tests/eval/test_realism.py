"""Known answers for the realism checks: fresh cases pass, grainy or collapsed generators fail (issue 14)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medidiff.data.brats import MODALITIES
from medidiff.data.phantom import PhantomSpec, case_seed, make_phantom_case
from medidiff.eval.realism import brain_histogram_distance, brain_masks, realism_checks
from tests.eval import to_unit_range

SHAPE = (32, 32, 24)


def phantoms(seed: int, n: int) -> torch.Tensor:
    """(n, 4, *SHAPE) fresh phantom heads in [-1, 1], background -1 (what the eval pipeline gives)."""
    spec = PhantomSpec(shape=SHAPE, tumour_fraction=1.0)
    cases = [make_phantom_case(case_seed(seed, i), spec=spec) for i in range(n)]
    return torch.from_numpy(np.stack([[to_unit_range(c.images[m]) for m in MODALITIES] for c in cases]) * 2 - 1).float()


def grainy_copies(case: torch.Tensor, n: int, sigma: float = 0.06, seed: int = 0) -> torch.Tensor:
    """n copies of one (C, X, Y, Z) case with independent grain everywhere (as the recorded run's generator)."""
    g = torch.Generator().manual_seed(seed)
    u = (case + 1) / 2
    out = [(u + sigma * torch.randn(u.shape, generator=g)).clamp(0, 1) for _ in range(n)]
    return torch.stack(out) * 2 - 1


@pytest.fixture(scope="module")
def data() -> dict[str, torch.Tensor]:
    return {"real": phantoms(0, 6), "heldout": phantoms(1, 3), "fresh": phantoms(2, 4)}


def test_brain_mask_of_a_skull_stripped_case_is_its_non_zero_region_and_a_thin_rim(data):
    from scipy import ndimage

    x = data["real"][:3]
    m = brain_masks(x)
    truth = (x > -1).any(1).numpy()
    for i in range(3):
        assert (m[i] & truth[i]).sum() >= 0.98 * truth[i].sum()  # covers the brain
        assert not (m[i] & ~ndimage.binary_dilation(truth[i], iterations=2)).any()  # at most a 2-voxel rim
    grainy = grainy_copies(x[0], 1)
    assert (brain_masks(grainy)[0] ^ m[0]).sum() < 0.05 * m[0].sum()  # grain does not move it


def test_the_histogram_distance_is_that_of_a_draw_from_the_pooled_brains(data):
    """Positions are drawn before any voxel is read (only the drawn ones are copied): the W1 is the one
    of drawing ``max_voxels`` from every case's brain voxels pooled in case order, as it was before."""
    from scipy.stats import wasserstein_distance

    real, heldout = data["real"], data["heldout"]
    ma, mb = brain_masks(real), brain_masks(heldout)
    max_voxels = int(min(ma.sum(), mb.sum()) // 3)  # both sides drawn
    rng = np.random.default_rng(7)
    expected = []
    for ch in range(real.shape[1]):
        pooled = [np.concatenate([((x[i, ch].numpy().astype(np.float64) + 1) / 2 * 2 - 1)[m[i]] for i in range(len(x))])
                  for x, m in ((real, ma), (heldout, mb))]
        va, vb = (rng.choice(v, max_voxels, replace=False) for v in pooled)
        expected.append(wasserstein_distance(va, vb))
    got = brain_histogram_distance(real, ma, heldout, mb, max_voxels=max_voxels, seed=7)
    np.testing.assert_array_equal(got, np.asarray(expected))
    assert (got > 0).all()


def test_fresh_cases_pass_every_check(data):
    r = realism_checks(data["fresh"], data["real"], data["heldout"], modalities=MODALITIES)
    assert r["failed"] == [], r["checks"]
    assert r["checks"]["background"]["synthetic_fraction_nonzero"] == 0.0


def test_grainy_copies_of_one_case_are_neither_realistic_nor_diverse(data):
    fake = grainy_copies(data["fresh"][0], 4)
    r = realism_checks(fake, data["real"], data["heldout"], modalities=MODALITIES,
                       mask_groups=["one-mask"] * 4)
    assert set(r["failed"]) == {"background", "power_spectrum", "detail_coherence", "intensity_histogram", "diversity"}, r["checks"]
    assert r["checks"]["background"]["synthetic_fraction_nonzero"] > 0.9
    assert r["checks"]["diversity"]["ratio"] < 0.2
    assert r["checks"]["diversity"]["same_mask"]["pairs"] == 6
    # the worst spectral band is a high one: grain is high-frequency power
    for v in r["checks"]["power_spectrum"]["per_modality"].values():
        assert v["worst_band"] >= r["checks"]["power_spectrum"]["bands"] // 2


def _with_brain_grain(x: torch.Tensor, sigma: float, seed: int = 0) -> torch.Tensor:
    """Independent grain of std ``sigma`` (of the [0, 1] range) inside each case's brain only, so the
    background check stays blind to it."""
    g = torch.Generator().manual_seed(seed)
    u, brain = (x + 1) / 2, torch.as_tensor(brain_masks(x))[:, None]
    return (u + sigma * torch.randn(u.shape, generator=g) * brain).clamp(0, 1) * 2 - 1


def test_grain_at_the_real_power_passes_the_spectrum_and_fails_detail_coherence(data):
    """The failure a 2026-12-02 run showed (EDM's skip at 0.1: speckled brains that met the spectrum
    goal): fresh cases with faint grain inside the brain keep every band within the spectrum's
    tolerance and every other check, and only the detail coherence names it, as grain."""
    r = realism_checks(_with_brain_grain(data["fresh"], 0.03), data["real"], data["heldout"], modalities=MODALITIES)
    assert r["failed"] == ["detail_coherence"], r["checks"]
    coh = r["checks"]["detail_coherence"]["per_modality"]
    assert {v["reads_as"] for v in coh.values()} == {"grainier"}
    assert sum(not v["pass"] for v in coh.values()) >= 3  # t2w's bright, flat regions hide the least of it
    fresh = realism_checks(data["fresh"], data["real"], data["heldout"], modalities=MODALITIES)
    for mod, v in coh.items():  # grain lowers it below what the same cases have without
        assert v["synthetic"] < fresh["checks"]["detail_coherence"]["per_modality"][mod]["synthetic"]


def test_blur_reads_as_smoother_detail(data):
    from scipy import ndimage

    blurred = torch.stack([torch.stack([torch.as_tensor(ndimage.gaussian_filter(ch.numpy(), 1.0)) for ch in case])
                           for case in data["fresh"]]).float()
    r = realism_checks(blurred, data["real"], data["heldout"], modalities=MODALITIES)
    coh = r["checks"]["detail_coherence"]
    assert not coh["pass"] and {v["reads_as"] for v in coh["per_modality"].values()} == {"smoother"}, coh


def test_collapsed_generator_is_not_diverse(data):
    fake = data["fresh"][:1].repeat(4, 1, 1, 1, 1)
    r = realism_checks(fake, data["real"], data["heldout"], modalities=MODALITIES)
    assert "diversity" in r["failed"] and r["checks"]["diversity"]["ratio"] == 0.0


def test_one_real_reference_scores_several_sets_as_the_full_checks_do(data):
    """A benchmark builds the real side once and scores every run against it: each result must be
    exactly what the full checks give, the grainy set still caught."""
    from medidiff.eval import EvalConfig, real_reference_for, realism_checks_for

    cfg = EvalConfig()
    reference = real_reference_for(cfg, data["real"], data["heldout"])
    for synthetic, groups in ((data["fresh"], None), (grainy_copies(data["fresh"][0], 4), ["one-mask"] * 4)):
        shared = realism_checks_for(cfg, synthetic, reference, modalities=MODALITIES, mask_groups=groups)
        full = realism_checks_for(cfg, synthetic, data["real"], data["heldout"], modalities=MODALITIES,
                                  mask_groups=groups)
        assert shared == full
    assert set(shared["failed"]) == {"background", "power_spectrum", "detail_coherence", "intensity_histogram", "diversity"}
    with pytest.raises(ValueError, match="heldout"):
        realism_checks_for(cfg, data["fresh"], reference, data["heldout"], modalities=MODALITIES)


def test_the_reference_reuses_the_training_side_only_where_it_is_the_floors_set(data):
    """With held-out cases the floor compares them with the training cases, whose masks and spectrum
    are computed once; without, the training set's two halves (neither is the whole set)."""
    from medidiff.eval.realism import radial_power_spectrum, real_reference, spectrum_ratio

    real, held = data["real"], data["heldout"]
    p_real = radial_power_spectrum(real, brain_masks(real), bands=8)
    p_held = radial_power_spectrum(held, brain_masks(held), bands=8)
    ref = real_reference(real, held, bands=8)
    np.testing.assert_array_equal(ref.spectrum, p_real)
    np.testing.assert_array_equal(ref.floor_spectrum_ratio, spectrum_ratio(p_held, p_real))
    alone = real_reference(real, None, bands=8)
    halves = [radial_power_spectrum(x, brain_masks(x), bands=8) for x in (real[:3], real[3:])]
    np.testing.assert_array_equal(alone.floor_spectrum_ratio, spectrum_ratio(*halves))
    np.testing.assert_array_equal(alone.spectrum, p_real)


def labelled_phantoms(seed: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, 4, *SHAPE) images and (n, 3, *SHAPE) WT/TC/ET masks of fresh phantoms, about one in five
    tumour-free (the phantom's own rate)."""
    from medidiff.data.brats import REGIONS

    cases = [make_phantom_case(case_seed(seed, i), spec=PhantomSpec(shape=SHAPE)) for i in range(n)]
    images = torch.from_numpy(np.stack([[to_unit_range(c.images[m]) for m in MODALITIES] for c in cases]) * 2 - 1).float()
    labels = torch.from_numpy(np.stack([[np.isin(c.seg, codes) for codes in REGIONS.values()] for c in cases]))
    return images, labels


@pytest.fixture(scope="module")
def labelled() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    return {"real": labelled_phantoms(10, 24), "heldout": labelled_phantoms(11, 16), "fresh": labelled_phantoms(12, 16)}


def _labelled_check(synthetic: tuple[torch.Tensor, torch.Tensor], data, name: str = "tumour_statistics") -> dict:
    """The check ``name`` of labelled ``synthetic`` (images, labels) against the fixture's real sets."""
    (ri, rl), (hi, hl) = data["real"], data["heldout"]
    r = realism_checks(synthetic[0], ri, hi, modalities=MODALITIES, real_labels=rl, heldout_labels=hl,
                       synthetic_labels=synthetic[1])
    return r["checks"][name]


def _tumour_check(synthetic: tuple[torch.Tensor, torch.Tensor], data) -> dict:
    return _labelled_check(synthetic, data)


def test_fresh_labelled_cases_pass_the_tumour_statistics(labelled):
    t = _tumour_check(labelled["fresh"], labelled)
    assert t["pass"], t
    assert 0.5 < t["share_with_tumour"]["real"] < 1.0  # the phantom draws some tumour-free cases


def test_a_generator_that_drops_tumours_fails_the_share(labelled):
    """A 2026-11-30 quality run generated 6 tumour-free cases of 16 against 15 % real: no intensity
    check saw it. Here half the fresh cases lose their tumour labels."""
    images, labels = labelled["fresh"]
    dropped = labels.clone()
    dropped[::2] = False
    t = _tumour_check((images, dropped), labelled)
    assert not t["share_with_tumour"]["pass"] and not t["pass"], t
    assert t["share_with_tumour"]["synthetic"] < t["share_with_tumour"]["real"] - t["share_with_tumour"]["allowed_difference"]


def test_tumours_far_too_large_fail_the_sizes(labelled):
    from scipy import ndimage

    images, labels = labelled["fresh"]
    grown = labels.clone()
    for i in range(len(grown)):
        if grown[i, 0].any():  # WT grown by 4 voxels: several times the volume, same share of cases
            grown[i, 0] = torch.from_numpy(ndimage.binary_dilation(grown[i, 0].numpy(), iterations=4))
    t = _tumour_check((images, grown), labelled)
    assert t["share_with_tumour"]["pass"] and not t["size_log10_wt_fraction"]["pass"] and not t["pass"], t


def test_tumour_count_counts_components_and_ignores_stray_voxels():
    from medidiff.eval.realism import MIN_TUMOUR_SHARE, tumour_count

    wt = np.zeros((20, 20, 20), dtype=bool)
    assert tumour_count(wt) == 0
    wt[2:8, 2:8, 2:8] = True  # 216 voxels
    assert tumour_count(wt) == 1
    wt[8, 8, 8] = True  # touches the cube's corner: 26-connected, the same tumour
    assert tumour_count(wt) == 1
    wt[12:15, 12:15, 12:15] = True  # 27 voxels >= a tenth of 217: a second tumour
    assert 27 >= MIN_TUMOUR_SHARE * 217 and tumour_count(wt) == 2
    wt[18, 2, 18] = True  # one stray voxel: not a third
    assert tumour_count(wt) == 2


def test_a_second_tumour_in_every_case_fails_the_several_tumours_share(labelled):
    """2026-12-04: a loss weight from the WT label drew two to four tumours a case at 2 mm where real cases hold
    one, and the share and size rows could not say so. Here each fresh case with a tumour gets a second one in
    its WT label: a 5-voxel cube (125 voxels, over a tenth of every phantom tumour's 500-1030) in the grid's
    corner farthest from the tumour; TC and ET left as they are, so the sizes move by at most 0.1 decades."""
    from medidiff.eval.realism import tumour_count

    fresh = _tumour_check(labelled["fresh"], labelled)["share_with_several_tumours"]
    assert fresh["pass"] and fresh["real"] < 0.2, fresh  # the phantom draws one tumour a case
    images, labels = labelled["fresh"]
    doubled = labels.clone()
    for i in range(len(doubled)):
        wt = doubled[i, 0]
        if wt.any():
            centre = np.argwhere(wt.numpy()).mean(0)
            corner = [slice(1, 6) if c > n / 2 else slice(n - 6, n - 1) for c, n in zip(centre, wt.shape)]
            wt[tuple(corner)] = True
    counts = [tumour_count(d[0].numpy()) for d in doubled if d[0].any()]
    assert counts and all(c == 2 for c in counts), counts  # the known-bad input is what it says
    t = _tumour_check((images, doubled), labelled)
    several = t["share_with_several_tumours"]
    assert t["share_with_tumour"]["pass"] and not several["pass"] and not t["pass"], t
    assert several["synthetic"] > several["real"] + several["allowed_difference"]


def test_tumour_contrast_reads_a_built_case_exactly():
    """A case built with known levels: normal brain 0, edema 0.2, ET 0.8, and bright voxels (1.0) placed
    just outside WT + 2 voxels: the ET contrast is 0.8 in every modality and the brightest 0.5 % lies in the
    tumour only as far as the stray voxels leave room. The ET is read from the third label channel."""
    from medidiff.eval.realism import TOP_QUANTILE, tumour_contrast

    x = np.full((1, 2, 24, 24, 24), -1.0)
    brain = np.zeros((24, 24, 24), dtype=bool)
    brain[2:22, 2:22, 2:22] = True
    wt, et = np.zeros_like(brain), np.zeros_like(brain)
    wt[8:14, 8:14, 8:14] = True
    et[10:12, 10:12, 10:12] = True
    x[0][:, brain] = 0.0
    x[0][:, wt] = 0.2
    x[0][:, et] = 0.8
    labels = np.stack([wt, et, et])[None]  # WT, TC (= ET here), ET
    c = tumour_contrast(x, brain[None], labels)
    np.testing.assert_allclose(c["et_contrast"], [[0.8, 0.8]])
    np.testing.assert_allclose(c["et_upper"], [[0.8, 0.8]])  # a flat ET: its 90th percentile is its median
    np.testing.assert_allclose(c["top_in_tumour"], [[1.0, 1.0]])  # the ET is the brightest, inside WT
    np.testing.assert_allclose(c["ed_contrast"], [[0.2, 0.2]])  # the edema: WT without TC
    assert np.isnan(c["ncr_contrast"]).all()  # TC = ET here: no core
    cored = labels.copy()
    cored[0, 1, 9:13, 9:13, 9:13] = True  # TC around the ET: its shell is core, at the edema's 0.2 here
    np.testing.assert_allclose(tumour_contrast(x, brain[None], cored)["ncr_contrast"], [[0.2, 0.2]])
    stray = x.copy()
    n_top = int(round((1 - TOP_QUANTILE) * brain.sum()))
    far = np.argwhere(brain & (np.indices(brain.shape).min(0) >= 2) & (np.indices(brain.shape).max(0) < 6))[:n_top]
    for p in far:  # as many voxels as the top 0.5 % holds, at the top of the range, far from the tumour
        stray[0][(slice(None), *p)] = 1.0
    s = tumour_contrast(stray, brain[None], labels)
    assert (s["top_in_tumour"] < 0.5).all() and np.allclose(s["et_contrast"], 0.8)
    # a channel swap of the labels (ET read from WT) would read 0.2 lower: the channel is the third
    assert not np.allclose(tumour_contrast(x, brain[None], labels[:, ::-1].copy())["et_contrast"], 0.8)
    # without ET the contrast is nan, the share still read; without a tumour both are nan
    no_et = labels.copy()
    no_et[:, 2] = False
    assert np.isnan(tumour_contrast(x, brain[None], no_et)["et_contrast"]).all()
    assert np.isnan(tumour_contrast(x, brain[None], np.zeros_like(labels))["top_in_tumour"]).all()


def _contrast_check(synthetic: tuple[torch.Tensor, torch.Tensor], data) -> dict:
    return _labelled_check(synthetic, data, "tumour_contrast")


def test_fresh_labelled_cases_pass_the_tumour_contrast(labelled):
    c = _contrast_check(labelled["fresh"], labelled)
    assert c["pass"], c
    # the phantom's enhancing tumour is bright in t1c, and the brain's brightest voxels lie in the tumour there
    assert c["et_contrast"]["t1c"]["real_median"] > 0.2 and c["top_in_tumour"]["t1c"]["real_median"] > 0.5, c


def test_an_enhancing_tumour_as_dark_as_the_normal_brain_fails_the_contrast(labelled):
    """The shipped model's t1c ET sat at 0.50 against real's 0.75 (outside-the-tumour scale, 2026-12-04):
    here every fresh case's ET takes its normal brain's median in every modality."""
    from medidiff.eval.realism import brain_masks

    images, labels = labelled["fresh"]
    dimmed = images.clone()
    masks = brain_masks(images)
    for i in range(len(images)):
        et, wt = labels[i, 2].numpy(), labels[i, 0].numpy()
        for ch in range(images.shape[1]):
            dimmed[i, ch][torch.from_numpy(et)] = float(np.median(images[i, ch].numpy()[masks[i] & ~wt]))
    c = _contrast_check((dimmed, labels), labelled)
    assert not c["pass"] and not c["et_contrast"]["t1c"]["pass"], c
    assert abs(c["et_contrast"]["t1c"]["synthetic_median"]) < 0.1  # the mask and margin move the median a little


def test_an_edema_too_bright_in_one_modality_fails_its_edema_reading_there(labelled):
    """The 2 mm mask-conditioned second stage drew t2f's edema +0.21 above real's against the normal brain, as much as
    its ET (paired_sampler_cpu_20261204): here every fresh case's edema (WT without TC) +0.4 in the last modality
    only: the edema reading fails there and passes in the first."""
    images, labels = labelled["fresh"]
    wet = images.clone()
    for i in range(len(images)):
        edema = (labels[i, 0] > 0.5) & ~(labels[i, 1] > 0.5)
        wet[i, -1][edema] = (wet[i, -1][edema] + 0.4).clamp(max=1.0)
    c = _contrast_check((wet, labels), labelled)
    last, first = list(c["ed_contrast"])[-1], list(c["ed_contrast"])[0]
    assert not c["pass"] and not c["ed_contrast"][last]["pass"], c["ed_contrast"][last]
    assert c["ed_contrast"][first]["pass"] and c["ed_contrast"][last]["synthetic_median"] > \
        c["ed_contrast"][last]["real_median"] + 0.1, c["ed_contrast"]


def test_a_darkened_core_shows_in_the_core_reading_which_is_not_judged(labelled):
    """The core (TC without ET) is read beside the judged rows (the 4 mm second stage drew t2w's core 0.45 too dark,
    maskcond_4mm_cpu_20261205), never judged: real sets may lack cores. Every fresh case's core -0.4 in the last
    modality: its synthetic median moves by about that, the first modality's does not, and the verdict is the
    judged rows' alone."""
    images, labels = labelled["fresh"]
    dark = images.clone()
    for i in range(len(images)):
        core = (labels[i, 1] > 0.5) & ~(labels[i, 2] > 0.5)
        dark[i, -1][core] = (dark[i, -1][core] - 0.4).clamp(min=-1.0)
    plain, c = _contrast_check(labelled["fresh"], labelled), _contrast_check((dark, labels), labelled)
    last, first = list(c["ncr_contrast"])[-1], list(c["ncr_contrast"])[0]
    assert "pass" not in c["ncr_contrast"][last] and c["ncr_contrast"][last]["synthetic_cases"] > 0
    assert c["ncr_contrast"][last]["synthetic_median"] < plain["ncr_contrast"][last]["synthetic_median"] - 0.2
    # (the brain mask reads every modality, so the first one's normal brain may move by a voxel or two)
    assert c["ncr_contrast"][first]["synthetic_median"] == pytest.approx(plain["ncr_contrast"][first]["synthetic_median"],
                                                                         abs=0.01)
    assert c["pass"] == all(v["pass"] for k in ("et_contrast", "et_upper", "top_in_tumour", "ed_contrast")
                            for v in c[k].values())


def test_a_dim_enhancing_tumour_fails_its_upper_reading_and_a_wide_et_label_its_share(labelled):
    """The shipped model's ET (2 mm, `et_where_cpu_20261204`): 0.24 of WT against real's 0.18, and dimmer at every
    percentile (90th 1.12 against 1.39 above the normal brain). Known-bad inputs for the two readings that hold
    these apart: (1) every fresh case's ET label grown into the rest of WT by two voxels, the images untouched:
    the ET's share of WT fails while its bright end (90th percentile) stays real's; (2) every ET voxel moved
    two thirds of the way to the normal brain's median in every modality, the labels untouched: the bright end
    fails, the share passes."""
    from scipy import ndimage

    from medidiff.eval.realism import brain_masks

    images, labels = labelled["fresh"]
    wide = labels.clone()
    for i in range(len(labels)):
        et, wt = labels[i, 2].numpy(), labels[i, 0].numpy()
        if et.any():
            wide[i, 2] = torch.from_numpy(ndimage.binary_dilation(et, iterations=2) & wt)
    t = _tumour_check((images, wide), labelled)
    c = _contrast_check((images, wide), labelled)
    share = t["et_share_of_wt_log10"]
    assert not share["pass"] and not t["pass"] and share["synthetic_median"] > share["real_median"] + 0.1, t
    assert c["et_upper"]["t1c"]["pass"], c["et_upper"]["t1c"]

    dim = images.clone()
    masks = brain_masks(images)
    for i in range(len(images)):
        et, wt = labels[i, 2].numpy(), labels[i, 0].numpy()
        for ch in range(images.shape[1]):
            base = float(np.median(images[i, ch].numpy()[masks[i] & ~wt]))
            v = dim[i, ch][torch.from_numpy(et)]
            dim[i, ch][torch.from_numpy(et)] = base + (v - base) / 3
    c = _contrast_check((dim, labels), labelled)
    assert _tumour_check((dim, labels), labelled)["et_share_of_wt_log10"]["pass"]
    upper = c["et_upper"]["t1c"]
    assert not upper["pass"] and not c["pass"] and upper["synthetic_median"] < upper["real_median"] - 0.1, upper


def test_the_share_rule_allows_two_cases_of_n_where_every_real_case_has_it():
    """At a real share of 1 the allowance is 2 sqrt(1/n^2) = 2/n: two cases of n without the property pass (rounding
    failed them once: 52 of 54 tumours with a core), three fail."""
    from medidiff.eval.realism import _share_check

    real = np.ones(146, dtype=bool)
    for missing, ok in ((2, True), (3, False)):
        syn = np.arange(54) >= missing
        assert _share_check(syn, real, real, real)["pass"] is ok, missing


def _core(labels: torch.Tensor, i: int) -> torch.Tensor:
    """Case ``i``'s necrotic core: TC without ET."""
    return (labels[i, 1] > 0.5) & ~(labels[i, 2] > 0.5)


def _without_core(labels: torch.Tensor, i: int, keep: np.ndarray | None = None) -> None:
    """Case ``i``'s necrotic core relabelled edema, but for the voxels in ``keep``."""
    core = _core(labels, i)
    labels[i, 1][core if keep is None else core & ~torch.from_numpy(keep)] = False


def test_missing_or_shrunken_necrotic_cores_fail_their_checks(labelled):
    """The shipped model drew necrotic cores at half real's volume with a tail of near-empty ones while every
    other check passed (necrotic_core_cpu_20261207). Known-bad inputs: (1) every other fresh case with a core loses it
    (relabelled edema, WT and ET untouched): the share with a core fails; (2) every core eroded to at most a
    third of its voxels (at least one kept): its share of WT fails, the share with a core passes. The WT sizes
    and the ET's share stay real's in both."""
    from scipy import ndimage

    images, labels = labelled["fresh"]
    plain = _tumour_check(labelled["fresh"], labelled)
    assert plain["share_with_core"]["real"] > 0.5 and plain["share_with_core"]["pass"], plain["share_with_core"]
    assert plain["core_share_of_wt_log10"]["pass"], plain["core_share_of_wt_log10"]
    cores = [i for i in range(len(labels)) if _core(labels, i).any()]
    assert len(cores) >= 8, "the fixture needs cases with cores"

    dropped = labels.clone()
    for i in cores[::2]:
        _without_core(dropped, i)
    t = _tumour_check((images, dropped), labelled)
    assert not t["share_with_core"]["pass"] and not t["pass"], t["share_with_core"]
    assert t["size_log10_wt_fraction"]["pass"] and t["et_share_of_wt_log10"]["pass"]

    small = labels.clone()
    for i in cores:
        core = _core(labels, i).numpy()
        keep = core
        while keep.sum() > core.sum() / 3:
            eroded = ndimage.binary_erosion(keep)
            if not eroded.any():  # eroded away: keep one voxel
                eroded.flat[np.flatnonzero(keep)[0]] = True
            keep = eroded
        _without_core(small, i, keep)
    t = _tumour_check((images, small), labelled)
    share = t["core_share_of_wt_log10"]
    assert not share["pass"] and not t["pass"] and share["synthetic_median"] < share["real_median"] - 0.3, share
    assert t["share_with_core"]["pass"] and t["size_log10_wt_fraction"]["pass"] and t["et_share_of_wt_log10"]["pass"]


def test_stray_bright_voxels_outside_the_tumour_fail_the_contrast(labelled):
    """A third of the shipped model's brightest 0.5 % of t1c lay outside the tumour (real: 2-4 %): here 2 %
    of each fresh case's normal brain is set to the top of the range in every modality, the tumour untouched."""
    from scipy import ndimage

    from medidiff.eval.realism import brain_masks

    images, labels = labelled["fresh"]
    stray = images.clone()
    masks = brain_masks(images)
    g = np.random.default_rng(0)
    for i in range(len(images)):
        normal = masks[i] & ~ndimage.binary_dilation(labels[i, 0].numpy(), iterations=2)
        idx = np.flatnonzero(normal)
        hit = np.zeros(normal.size, dtype=bool)
        hit[g.choice(idx, max(1, idx.size // 50), replace=False)] = True
        stray[i][:, torch.from_numpy(hit.reshape(normal.shape))] = 1.0
    c = _contrast_check((stray, labels), labelled)
    assert not c["pass"] and not c["top_in_tumour"]["t1c"]["pass"], c
    assert c["top_in_tumour"]["t1c"]["synthetic_median"] < c["top_in_tumour"]["t1c"]["real_median"] - 0.3


def test_without_labels_there_is_no_tumour_check(labelled):
    (ri, _), (hi, _) = labelled["real"], labelled["heldout"]
    r = realism_checks(labelled["fresh"][0], ri, hi, modalities=MODALITIES)
    assert "tumour_statistics" not in r["checks"] and "tumour_contrast" not in r["checks"]
    with pytest.raises(ValueError, match="labels"):
        realism_checks(labelled["fresh"][0], ri, hi, modalities=MODALITIES, real_labels=labelled["real"][1])


def shrunken(cases: torch.Tensor, zoom: float) -> torch.Tensor:
    """Each (C, X, Y, Z) case scaled by ``zoom`` about the grid's centre, background 0 around it (in [0, 1])."""
    from scipy import ndimage

    u = ((cases + 1) / 2).numpy()
    centre = (np.array(u.shape[2:]) - 1) / 2
    # output voxel o samples input voxel centre + (o - centre) / zoom: the content shrinks by zoom
    out = [[ndimage.affine_transform(ch, np.full(3, 1 / zoom), offset=centre - centre / zoom, order=1, cval=0.0)
            for ch in case] for case in u]
    return torch.from_numpy(np.asarray(out, dtype=np.float32)) * 2 - 1


def test_shrunken_brains_fail_the_brain_size(data):
    """The 2026-12-02 background-weighted run drew brains a third smaller than real; fresh cases
    shrunk to 0.8 of their size (half the volume) must fail the brain size check, and fresh cases
    pass it (test_fresh_cases_pass_every_check)."""
    small = shrunken(data["fresh"], 0.8)
    r = realism_checks(small, data["real"], data["heldout"], modalities=MODALITIES)
    b = r["checks"]["brain_size"]
    assert not b["pass"] and "brain_size" in r["failed"], b
    # half the volume, but the mask's partial-volume rim shrinks less on a 32-voxel grid: 0.6 of it
    assert b["synthetic_median"] < b["real_median"] + np.log10(0.7), b
    assert b["wasserstein"] > 3 * b["floor"], b


def test_a_grey_box_fails_the_brain_size(data):
    """A generator that fills the grid (no background at all): a constant has no level between its
    background and Otsu's, so its brain mask is empty (or, with texture, the whole grid): far from real."""
    box = torch.full_like(data["fresh"], 0.2)
    b = realism_checks(box, data["real"], data["heldout"], modalities=MODALITIES)["checks"]["brain_size"]
    assert not b["pass"] and abs(b["synthetic_median"] - b["real_median"]) > 0.3, b


def test_case_globals_read_a_built_case_exactly():
    from medidiff.eval.realism import case_globals

    x = np.full((1, 2, 10, 10, 10), -1.0)
    m = np.zeros((1, 10, 10, 10), bool)
    m[0, 2:7, 2:7, 2:6] = True  # 100 voxels of 1000
    x[0, 0][m[0]] = np.linspace(-0.5, 0.5, 100)
    x[0, 1][m[0]] = 0.25
    g = case_globals(x, m)
    np.testing.assert_allclose(g, [[-1.0, 0.0, 0.25]], atol=1e-12)
    assert np.isnan(case_globals(x, np.zeros_like(m))).all()  # no brain: nothing to size or read


COV = np.full((5, 5), 0.3) + 0.7 * np.eye(5)  # correlated properties, as a case's size and levels are


def _spread(syn, seed: int = 0) -> dict:
    """spread_check of ``syn(rng)`` (or an array) against 256 real reference and 192 real floor cases."""
    from medidiff.eval.realism import spread_check

    rng = np.random.default_rng(1000 + seed)
    real, held = (rng.multivariate_normal(np.zeros(5), COV, n) for n in (256, 192))
    return spread_check(syn(rng) if callable(syn) else syn, real, held, names=list("abcde"), seed=seed)


def _fresh(rng, n: int = 64) -> np.ndarray:
    return rng.multivariate_normal(np.zeros(5), COV, n)


def test_the_spread_passes_fresh_real_draws_and_fails_narrowed_and_collapsed_sets():
    """Fresh draws of the real distribution pass in most trials (alpha 0.05 shared among six figures); a set at
    0.6 of the spread in every property fails, so does one at 0.4 in one property only, one whose brains never
    vary in size, and one case repeated with a little noise even with a few wild cases beside it (the robust sd
    does not let them hide the rest)."""
    passed = sum(_spread(_fresh, seed=s)["pass"] for s in range(40))
    assert passed >= 37, passed

    r = _spread(lambda rng: 0.6 * _fresh(rng))
    assert r["pass"] is False and r["below"] and r["reads_as"].startswith("narrower"), r

    def one_narrow(rng):
        x = _fresh(rng)
        x[:, 2] *= 0.4
        return x

    for seed in range(5):
        r = _spread(one_narrow, seed=seed)
        assert r["pass"] is False and r["per_property"]["c"]["below"], r["per_property"]["c"]
        assert not r["per_property"]["a"]["below"]

    def one_size(rng):
        x = _fresh(rng)
        x[:, 0] = 0.3
        return x

    r = _spread(one_size)
    assert r["pass"] is False and r["ratio"] == 0.0 and r["per_property"]["a"]["ratio"] == 0.0

    def collapsed_with_outliers(rng):
        x = _fresh(rng, 1) + 0.05 * rng.standard_normal((64, 5))
        x[:6] = rng.multivariate_normal(np.zeros(5), 25 * COV, 6)  # six wild cases
        return x

    r = _spread(collapsed_with_outliers)
    assert r["pass"] is False and max(v["ratio"] for v in r["per_property"].values()) < 0.3, r

    r = _spread(lambda rng: 2.0 * _fresh(rng))
    assert r["pass"] and r["reads_as"] == "wider than every real resample"  # named, not judged (W1 sees it)


def test_the_spread_leaves_out_cases_without_a_brain_and_properties_real_cases_share():
    from medidiff.eval.realism import spread_check

    rng = np.random.default_rng(3)
    real, held, syn = _fresh(rng, 256), _fresh(rng, 192), _fresh(rng, 32)
    syn[:4] = np.nan  # four cases without a brain
    r = spread_check(syn, real, held, names=list("abcde"))
    assert r["cases_without_brain"] == 4 and r["pass"] is True
    r = spread_check(np.full((32, 5), np.nan), real, held, names=list("abcde"))
    assert r["pass"] is False and r["reads_as"] == "no synthetic case with a brain"
    real[:200, 1] = 0.5  # most real cases alike in one property: its ratio has no yardstick
    r = spread_check(_fresh(rng, 32), real, held, names=list("abcde"))
    assert r["per_property"]["b"]["reads_as"] == "no real spread: not judged" and "b" not in r["judged_properties"]
    assert r["pass"] is True and not r["per_property"]["b"]["below"]
    with pytest.raises(ValueError, match="must be"):
        spread_check(syn[:, :3], real, held, names=list("abcde"))


def test_the_spread_gives_no_verdict_from_too_few_floor_cases():
    from medidiff.eval.realism import spread_check

    rng = np.random.default_rng(0)
    real, held = rng.standard_normal((50, 2)), rng.standard_normal((20, 2))
    r = spread_check(np.zeros((16, 2)), real, held, names=["a", "b"])  # 20 floor cases for 16: no verdict
    assert r["pass"] is None and "no verdict" in r["note"]
    assert r["reads_as"].startswith("narrower")  # read all the same


def test_realism_judges_the_spread_with_enough_held_out_cases_and_not_without():
    """Through realism_checks: a collapsed set of 8 fails the spread against 20 held-out phantoms and fresh
    cases pass; with 3 held-out cases the check reads and gives no verdict, which is no failure."""
    real, held = phantoms(0, 6), phantoms(5, 20)
    fresh = phantoms(2, 8)
    ok = realism_checks(fresh, real, held, modalities=MODALITIES)["checks"]["spread_across_cases"]
    assert ok["pass"] is True and set(ok["per_property"]) == {"brain_size", *(f"level_{m}" for m in MODALITIES)}
    r = realism_checks(_with_brain_grain(fresh[:1].repeat(8, 1, 1, 1, 1), 0.01), real, held, modalities=MODALITIES)
    assert "spread_across_cases" in r["failed"]
    assert r["checks"]["spread_across_cases"]["per_property"]["brain_size"]["ratio"] < 0.1  # grain moves the mask a little
    small = realism_checks(fresh, real, held[:3], modalities=MODALITIES)
    assert small["checks"]["spread_across_cases"]["pass"] is None and "spread_across_cases" not in small["failed"]
