"""Mask fidelity's split by tumour presence: what the mean over all cases mixes."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pytest
import torch

from medidiff.eval.utility import dice_by_tumour_presence, fidelity_ratios

if TYPE_CHECKING:
    from medidiff.eval.data import CaseSet


def test_fidelity_dice_is_split_by_tumour_presence():
    """A case without a region scores 0 on any false voxel of it: the split, per region, shows what
    the mean over all cases mixes."""
    labels = torch.zeros(4, 3, 4, 4, 4, dtype=torch.bool)
    labels[:2, 0, 1:3, 1:3, 1:3] = True  # cases 0 and 1 carry a tumour (WT) ...
    labels[0, 1:, 1:2, 1:2, 1:2] = True  # ... and only case 0 a core and enhancing part
    dice = np.array([[[0.9, 0.8, 0.7], [0.7, 0.0, 1.0], [0.0, 1.0, 1.0], [1.0, 1.0, 1.0]]])  # (S=1, N=4, R=3)
    split = dice_by_tumour_presence(dice, labels)
    assert split["with_region"]["WT"] == {"cases": 2, "dice_mean": pytest.approx(0.8)}
    assert split["without_region"]["WT"] == {"cases": 2, "dice_mean": 0.5}  # one false WT of two
    assert split["with_region"]["TC"] == {"cases": 1, "dice_mean": pytest.approx(0.8)}
    assert split["without_region"]["TC"] == {"cases": 3, "dice_mean": pytest.approx(2 / 3)}  # case 1: a false TC
    assert split["with_region"]["ET"]["cases"] == 1 and split["without_region"]["ET"]["dice_mean"] == 1.0
    assert dice_by_tumour_presence(dice, labels.numpy()) == split  # numpy labels too


def _fidelity_side(dice: np.ndarray, labels: np.ndarray) -> dict:
    """mask_fidelity's reading of one side (synthetic or real held-out) from per-case Dice (S, N, R)."""
    mean = dice.mean(axis=(0, 1))
    return {"aggregate": {r: {"dice_mean": float(mean[k])} for k, r in enumerate(("WT", "TC", "ET"))},
            "by_tumour_presence": dice_by_tumour_presence(dice, labels)}


def _cases(n_tumour: int, n_free: int) -> np.ndarray:
    labels = np.zeros((n_tumour + n_free, 3, 4, 4, 4), bool)
    labels[:n_tumour, :, 1:3, 1:3, 1:3] = True
    return labels


def test_fidelity_ratio_reads_the_tumours_not_the_share_of_tumour_free_cases():
    """The segmenter of the 2026-12-02 runs finds a false WT voxel in every tumour-free case (Dice 0
    there, real or synthetic). Over all cases, the ratio then rewards a generator for putting a tumour
    in every case and punishes one with more tumour-free cases than real, however well its images show
    their tumours; the goal's ratio compares the cases with a tumour, and still fails images whose
    labels are elsewhere (known bad: labels mirrored away from the tumour they drew)."""
    real_labels = _cases(30, 6)  # 17 % tumour-free, as the held-out fold
    real = _fidelity_side(np.where(real_labels.any((2, 3, 4)), 0.98, 0.0)[None], real_labels)

    def synthetic(n_tumour, n_free, dice_with):
        labels = _cases(n_tumour, n_free)
        return _fidelity_side(np.where(labels.any((2, 3, 4)), dice_with, 0.0)[None], labels)

    every_case = fidelity_ratios(synthetic(24, 0, 0.95), real)  # a tumour in every case, found as well as real
    assert every_case["dice_ratio_to_real_all_cases"]["WT"] > 1.1  # the old ratio: better than the real cases
    assert every_case["dice_ratio_to_real"]["WT"] == pytest.approx(0.95 / 0.98)
    many_free = fidelity_ratios(synthetic(16, 8, 0.97), real)  # twice the real tumour-free share
    assert many_free["dice_ratio_to_real_all_cases"]["WT"] < 0.85  # the old ratio failed it
    assert many_free["dice_ratio_to_real"]["WT"] >= 0.85
    mirrored = fidelity_ratios(synthetic(24, 0, 0.1), real)  # the labels miss the drawn tumour
    assert all(mirrored["dice_ratio_to_real"][r] < 0.85 for r in ("WT", "TC"))
    # no generated case with a region the real cases have: a fail, not "no verdict"
    none = fidelity_ratios(synthetic(0, 8, 0.0), real)
    assert none["dice_ratio_to_real"] == {"WT": 0.0, "TC": 0.0, "ET": 0.0}
    # no real case with it: no ratio (report.json's "nan" strings read too)
    assert all(np.isnan(v) for v in fidelity_ratios(real, synthetic(0, 8, 0.0))["dice_ratio_to_real"].values())
    real["by_tumour_presence"]["with_region"]["WT"]["dice_mean"] = "nan"
    assert np.isnan(fidelity_ratios(synthetic(8, 0, 0.9), real)["dice_ratio_to_real"]["WT"])


def test_utility_reads_the_tumours_apart_from_the_empty_cases(monkeypatch):
    """Known bad: a real + synthetic segmenter that predicts nothing on the tumour-free test cases (Dice 1
    there, against 0 for one false voxel) while it finds the tumours worse than the real one. Over all cases
    it gains (the 2026-12-03 run: TC +0.09); on the cases with the region it loses, and the goal reads that.
    Regions differ in which cases hold them and in their scores, and there are two seeds, so a region or seed
    read in another's place shows."""
    import medidiff.eval.utility as ut
    from medidiff.eval.config import EvalConfig
    from medidiff.eval.data import CaseSet
    from medidiff.eval.segmentation import SegScores

    labels = torch.from_numpy(_cases(8, 2))  # cases 8 and 9 are tumour-free ...
    labels[6:8, 1:] = False  # ... and cases 6 and 7 hold edema only (WT without TC or ET)
    test = CaseSet("real_heldout", torch.zeros(10, 4, 4, 4, 4), labels, [f"c{i}" for i in range(10)])
    present = labels.reshape(10, 3, -1).any(2).numpy()  # (N, R)
    # Dice with the region per (set, seed) and region; on a case without it: 1 for real + synthetic, else 0
    on_region = {"real": [(0.9, 0.8, 0.7), (0.9, 0.8, 0.7)], "real_matched": [(0.6, 0.5, 0.4), (0.6, 0.5, 0.4)],
                 "synthetic": [(0.7, 0.6, 0.5), (0.7, 0.6, 0.5)], "real+synthetic": [(0.8, 0.7, 0.6), (0.8, 0.74, 0.6)]}
    empty = {"real": 0.0, "real_matched": 0.0, "synthetic": 0.0, "real+synthetic": 1.0}
    dice = {k: [np.where(present, np.asarray(seed)[None], empty[k]) for seed in v] for k, v in on_region.items()}
    sets = {k: CaseSet(k, torch.zeros(4, 4, 4, 4, 4), torch.zeros(4, 3, 4, 4, 4, dtype=torch.bool), list("abcd"))
            for k in on_region}
    sets["synthetic"].labels[0, :, 1, 1, 1] = True  # all three regions, then edema alone (WT), then two empty brains
    sets["synthetic"].labels[1, 0, 2, 2, 2] = True

    class Bank:  # SegmenterBank's interface: the "model" is (set, seed), whose preset scores the scorer returns
        histories = {(k, s): ut.TrainingHistory(1, 1, 1, 0.5, "max_epochs", [0.5], 4, 0) for k in sets for s in (0, 1)}

        def __init__(self) -> None:
            self.sets = sets

        def get(self, name, seed):
            return name, seed

    def fake_scores(model, images, labels, spacing, **kw):
        d = dice[model[0]][model[1]]
        return SegScores(d, np.zeros_like(d), np.zeros(d.shape, bool), list(kw["case_ids"]))

    monkeypatch.setattr(ut, "evaluate_segmenter", fake_scores)
    out = ut.utility_experiment(Bank(), test, EvalConfig(seeds=[0, 1], bootstrap=200), (1.0, 1.0, 1.0))
    split = out["training_sets"]["real+synthetic"]["by_tumour_presence"]
    assert split["with_region"]["WT"] == {"cases": 8, "dice_mean": pytest.approx(0.8)}
    assert split["with_region"]["TC"] == {"cases": 6, "dice_mean": pytest.approx(0.72)}  # the seeds' mean
    assert split["without_region"]["TC"] == {"cases": 4, "dice_mean": 1.0}  # nothing predicted on any of them
    assert out["training_sets"]["real"]["by_tumour_presence"]["without_region"]["ET"]["dice_mean"] == 0.0
    # each training set says how many of its cases lack each region (the tumour-free brains it learns from)
    assert out["training_sets"]["synthetic"]["cases_without_region"] == {"WT": 2, "TC": 3, "ET": 3}
    assert out["training_sets"]["real"]["cases_without_region"] == {"WT": 4, "TC": 4, "ET": 4}
    assert not any("does not replay" in n for n in out["notes"])  # on the CPU a seed replays
    on_gpu = ut.utility_experiment(Bank(), test, EvalConfig(seeds=[0, 1], bootstrap=200, device="cuda:0"), (1.0, 1.0, 1.0))
    assert any("segmenters trained on cuda:0, where a seed does not replay" in n for n in on_gpu["notes"])
    gain = out["paired_vs_real"]["real+synthetic - real"]  # the gain goal's pair, beside the size-matched one
    # TC over all cases (6 x 0.72 + 4 x 1) / 10 against 6 x 0.8 / 10: a gain; on the tumours a loss
    assert gain["TC"]["dice"]["mean"] == pytest.approx(0.352) and gain["TC"]["dice_with_region"]["mean"] == pytest.approx(-0.08)
    assert gain["TC"]["dice_with_region"]["cases"] == 6 and gain["WT"]["dice_with_region"]["cases"] == 8
    assert gain["ET"]["dice_with_region"]["mean"] == pytest.approx(-0.1)
    matched = out["paired_vs_real"]["synthetic - real_matched"]
    assert [matched[r]["dice_with_region"]["mean"] for r in ("WT", "TC", "ET")] == pytest.approx([0.1, 0.1, 0.1])
    assert set(out["paired_vs_real"]) == {"synthetic - real_matched", "real+synthetic - real_matched",
                                          "real+synthetic - real"}
    # no test case with a region: no paired reading on it (not a zero)
    free = CaseSet("real_heldout", test.images, torch.zeros_like(labels), test.case_ids)
    out = ut.utility_experiment(Bank(), free, EvalConfig(seeds=[0, 1], bootstrap=200), (1.0, 1.0, 1.0))
    assert out["paired_vs_real"]["real+synthetic - real"]["WT"]["dice_with_region"] is None
    assert np.isnan(out["training_sets"]["real"]["by_tumour_presence"]["with_region"]["WT"]["dice_mean"])


def test_away_volume_counts_tumour_away_from_the_label_not_its_boundary():
    from medidiff.eval.segmentation import AWAY_MARGIN, away_volume_ml

    truth = torch.zeros(2, 3, 16, 16, 16, dtype=torch.bool)
    truth[0, :, 4:8, 4:8, 4:8] = True
    pred = torch.zeros_like(truth)
    pred[0, :, 3:9, 3:9, 3:9] = True  # the label's boundary off by one voxel: not away
    pred[0, 0, 13:15, 13:15, 13:15] = True  # a second WT blob of 8 voxels far from the label
    pred[1, 0, 0:2, 0:2, 0:2] = True  # a tumour-free label: every predicted voxel is away
    away = away_volume_ml(pred, truth, (2.0, 2.0, 2.0))  # 8 mm^3 a voxel
    assert away.shape == (2, 3) and AWAY_MARGIN >= 1
    assert away[0].tolist() == pytest.approx([8 * 8 / 1000, 0.0, 0.0])
    assert away[1].tolist() == pytest.approx([8 * 8 / 1000, 0.0, 0.0])


def _blob_cases(n: int, *, seed: int, label: str = "drawn") -> "CaseSet":
    """n cases whose bright 5^3 blob is the tumour (all three regions); ``label`` says what the labels hold:
    "drawn" the blob, "none" nothing (a tumour drawn and its label dropped), "one_of_two" the blob while a
    second, smaller tumour (4 x 3 x 3) is drawn away from it without a label."""
    from medidiff.eval.data import CaseSet

    rng = np.random.default_rng(seed)
    images = torch.zeros(n, 4, 16, 16, 16)
    labels = torch.zeros(n, 3, 16, 16, 16, dtype=torch.bool)
    for i in range(n):
        if i % 5 == 4:  # one case in five tumour-free, as the held-out fold
            continue
        x, y, z = (int(v) for v in rng.integers(2, 5, 3))
        images[i, :, x:x + 5, y:y + 5, z:z + 5] = 1.0
        if label != "none":
            labels[i, :, x:x + 5, y:y + 5, z:z + 5] = True
        if label == "one_of_two":  # >= 3 voxels from the labelled one
            images[i, :, 12:16, y:y + 3, z:z + 3] = 1.0
    return CaseSet("synthetic", images, labels, [f"c{i}" for i in range(n)])


def test_unlabelled_tumour_check_fails_tumours_drawn_without_their_labels():
    """Known bad inputs: the tumour drawn and its label dropped, and a second tumour drawn beside the
    labelled one without a label, which the Dice ratio on the tumour cases passes. A segmenter that finds
    the bright blobs (a perfect one) scores the real held-out cases; good synthetic cases (their labels
    on their blobs) pass."""
    from medidiff.eval.config import EvalConfig
    from medidiff.eval.segmentation import TrainingHistory
    from medidiff.eval.utility import MIN_FLAG_VOXELS, SegmenterBank, mask_fidelity

    class Blobs(torch.nn.Module):  # logits > 0 on the bright voxels, in every region
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(()))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return (20.0 * (x[:, :1] - 0.5) * self.w).expand(-1, 3, -1, -1, -1)

    cfg = EvalConfig(seeds=[0], bootstrap=100)
    bank = SegmenterBank({}, cfg, progress=False)
    bank.put("real", 0, Blobs(), TrainingHistory(1, 1, 1, 1.0, "max_epochs", [1.0], 1, 0))
    real = _blob_cases(20, seed=1)
    spacing = (2.0, 2.0, 2.0)

    def check(case_set):
        return mask_fidelity(bank, case_set, cfg, spacing, real)

    good = check(_blob_cases(20, seed=2))
    assert good["unlabelled_tumour"]["pass"]
    strata = good["unlabelled_tumour"]["strata"]
    for stratum in ("tumour-free", "with a tumour"):  # no real case has any away volume: the minimum flags
        assert strata[stratum]["regions"]["WT"]["threshold_ml"] == pytest.approx(MIN_FLAG_VOXELS * 8 / 1000)
    # 4 real tumour-free cases are too few to read that kind by: it is read against all 20
    assert strata["tumour-free"]["threshold_from"] == "every real case"
    assert strata["tumour-free"]["regions"]["WT"]["cases"] == {"synthetic": 4, "real": 20}
    assert strata["with a tumour"]["regions"]["WT"]["cases"] == {"synthetic": 16, "real": 16}
    dropped = check(_blob_cases(20, seed=2, label="none"))
    second = check(_blob_cases(20, seed=2, label="one_of_two"))
    assert second["dice_ratio_to_real"]["WT"] >= 0.85  # Dice on the labelled tumour passes the goal ...
    for bad in (dropped, second):  # ... the volume away from the labels fails it
        u = bad["unlabelled_tumour"]
        assert not u["pass"] and not u["regions"]["WT"]["pass"]
        assert u["regions"]["WT"]["share_flagged"]["synthetic"] == pytest.approx(0.8)  # every case with a tumour


def test_unlabelled_tumour_rule_reads_the_real_share_as_a_new_case_would():
    """The real cases set the threshold, so 2 of 40 above it is read as 3 / 41; the allowance adds 2 SEs of
    the difference of the two shares; where no real case has any away volume, the minimum volume keeps a
    few stray voxels from flagging a case."""
    from medidiff.eval.utility import unlabelled_tumour_check

    real_away = np.zeros((1, 40, 3))
    real_away[0, :2] = 1.0
    syn = np.zeros((1, 20, 3))
    syn[0, :4] = 1.0  # 20 % flagged
    wt = unlabelled_tumour_check(syn, real_away)["strata"]["all"]["regions"]["WT"]  # no tumour-free flags: one kind
    assert wt["share_flagged"]["real"] == pytest.approx(3 / 41)
    p = 3 / 41
    assert wt["allowed_share"] == pytest.approx(p + 2 * np.sqrt(p * (1 - p) / 20 + p * (1 - p) / 40))  # ~0.216
    assert wt["pass"]
    syn[0, :5] = 1.0  # 25 %: outside
    assert not unlabelled_tumour_check(syn, real_away)["pass"]
    stray = np.zeros((1, 20, 3))
    stray[0, :10] = 0.1  # half the cases with 0.1 mL away, where no real case has any
    assert not unlabelled_tumour_check(stray, np.zeros((1, 40, 3)))["pass"]
    assert unlabelled_tumour_check(stray, np.zeros((1, 40, 3)), min_ml=0.2)["pass"]


def test_unlabelled_tumour_check_reads_tumour_free_cases_against_real_tumour_free_ones():
    """The segmenter's false tumour on a tumour-free case (its normal brain scaled to the top of the range) is
    larger than beside a labelled tumour: read together, a set with three times the real tumour-free share
    was flagged for the same images; read apart it passes. Known bad inputs still fail against a segmenter
    with false positives on both kinds: tumour-free cases with more false tumour than the real ones, a second
    unlabelled tumour beside a labelled one, and tumours drawn with their labels dropped (read as tumour-free
    cases, flagged where the tumour adds to the segmenter's usual false volume)."""
    from medidiff.eval.utility import MIN_REAL_OF_A_KIND, unlabelled_tumour_check

    rng = np.random.default_rng(0)

    def cases(n: int, free_share: float, free_ml: tuple[float, float], tumour_ml: tuple[float, float] = (0.0, 0.5)):
        free = np.arange(n) < round(free_share * n)
        away = np.where(free, rng.uniform(*free_ml, n), rng.uniform(*tumour_ml, n))
        return np.repeat(away[None, :, None], 3, axis=2), free  # (S=1, N, R)

    def check(syn, syn_free, ref=None, ref_free=None):
        return unlabelled_tumour_check(syn, real if ref is None else ref, min_ml=0.2, synthetic_free=syn_free,
                                       real_free=real_free if ref_free is None else ref_free)

    real, real_free = cases(200, 0.15, (15.0, 106.0))
    same, same_free = cases(200, 0.45, (15.0, 106.0))  # the real images' behaviour, three times the tumour-free share
    assert not unlabelled_tumour_check(same, real, min_ml=0.2)["pass"]  # read together: flagged for its share
    apart = check(same, same_free)
    assert apart["pass"]
    assert apart["strata"]["tumour-free"]["threshold_from"] == "real tumour-free cases"
    assert apart["strata"]["tumour-free"]["regions"]["WT"]["cases"] == {"synthetic": 90, "real": 30}
    assert check(*cases(200, 0.15, (15.0, 106.0)))["pass"]  # a fresh draw of the real behaviour passes
    brighter = check(*cases(200, 0.15, (60.0, 160.0)))  # tumour-free cases read as more tumour than real
    assert not brighter["pass"] and not brighter["strata"]["tumour-free"]["regions"]["WT"]["pass"]
    second = check(*cases(200, 0.15, (15.0, 106.0), tumour_ml=(20.0, 40.0)))  # a second tumour beside the labelled one
    assert not second["strata"]["with a tumour"]["regions"]["WT"]["pass"]
    assert second["strata"]["tumour-free"]["regions"]["WT"]["pass"]
    dropped = check(*cases(200, 1.0, (80.0, 200.0)))  # every label dropped: false volume + a 65-95 mL tumour
    assert not dropped["pass"] and set(dropped["strata"]) == {"tumour-free"}
    # too few real cases of a kind: read against every real case, and said so
    for kept, whole in ((MIN_REAL_OF_A_KIND - 1, True), (MIN_REAL_OF_A_KIND, False)):
        keep = np.setdiff1d(np.arange(real.shape[1]), np.flatnonzero(real_free)[kept:])
        sparse = check(same, same_free, real[:, keep], real_free[keep])
        assert (sparse["strata"]["tumour-free"]["threshold_from"] == "every real case") == whole
        assert sparse["strata"]["tumour-free"]["regions"]["WT"]["cases"]["real"] == (len(keep) if whole else kept)
        if whole:  # the tumour-free cases' false volume against mostly tumour cases' thresholds: flagged
            assert not sparse["pass"]
    for flags in ({"synthetic_free": same_free}, {"real_free": real_free}):
        with pytest.raises(ValueError, match="both sides"):
            unlabelled_tumour_check(same, real, **flags)


def test_segmenter_bank_says_each_segmenter_it_trains(monkeypatch, caplog):
    """A saved segmenter covers its own seed; each further seed of eval.seeds trains, and is said so even
    with the progress bar off (a CPU evaluation once trained two more seeds for 50 minutes unannounced)."""
    import logging

    import medidiff.eval.utility as ut
    from medidiff.eval.config import EvalConfig
    from medidiff.eval.data import CaseSet

    history = ut.TrainingHistory(1, 1, 1, 0.5, "max_epochs", [0.5], 4, 0)
    trained = []
    monkeypatch.setattr(ut, "train_segmenter", lambda *a, seed, **k: (trained.append(seed) or torch.nn.Identity(), history))
    real = CaseSet("real", torch.zeros(3, 4, 4, 4, 4), torch.zeros(3, 3, 4, 4, 4, dtype=torch.bool), list("abc"))
    bank = ut.SegmenterBank({"real": real}, EvalConfig(seeds=[0, 1], epochs=7), progress=False)
    bank.put("real", 0, torch.nn.Identity(), history)  # the saved one
    with caplog.at_level(logging.INFO, logger="medidiff.eval.utility"):
        for seed in (0, 1, 1):
            bank.get("real", seed)
    assert trained == [1]
    assert [r.getMessage() for r in caplog.records] == [
        "evaluate: training the real segmenter of seed 1 on 3 cases (up to 7 epochs, cpu)"]


def _kinds(name: str, tumour: list[bool]) -> "CaseSet":
    """Tiny labelled cases: a WT voxel where ``tumour`` says so, none elsewhere; ids name the kind."""
    from medidiff.eval.data import CaseSet

    labels = torch.zeros(len(tumour), 3, 2, 2, 2, dtype=torch.bool)
    labels[torch.tensor(tumour), 0, 0, 0, 0] = True
    return CaseSet(name, torch.zeros(len(tumour), 4, 2, 2, 2), labels,
                   [f"{name}{i}{'t' if t else 'f'}" for i, t in enumerate(tumour)])


def test_utility_can_draw_the_synthetic_sets_with_the_real_sets_tumour_free_share():
    """A generator that draws fewer tumour-free cases than the data gives its segmenter fewer empty brains to learn
    from: with utility_match_tumour_free the size-matched synthetic set (and each sweep set, a prefix of the same
    order) holds the size-matched real set's share; off, the draw is the plain seeded one."""
    from medidiff.eval.utility import training_sets

    real = _kinds("r", [False] * 12 + [True] * 18)  # 30 real, 12 tumour-free
    synthetic = _kinds("s", [False] * 8 + [True] * 52)  # 60 synthetic, 8 tumour-free: a third of the data's share
    plain, _ = training_sets(real, synthetic, (1, 2), seed=0)
    assert plain["synthetic"].case_ids == synthetic.subset(
        sorted(np.random.default_rng(0).permutation(60)[:30].tolist()), "s").case_ids  # off: unchanged
    sets, notes = training_sets(real, _kinds("s", [False] * 16 + [True] * 44), (1, 2), seed=0,
                                match_tumour_free=True)
    free = [c for c in sets["synthetic"].case_ids if c.endswith("f")]
    assert len(sets["synthetic"]) == 30 and len(free) == 12  # the real set's 12 of 30
    assert "synthetic_x2" not in sets and any("synthetic_x2 skipped" in n for n in notes)  # 16 free cannot make 24
    assert any("tumour-free share (12 of 30)" in n for n in notes)
    assert sets["real+synthetic"].case_ids == real.case_ids + sets["synthetic"].case_ids

    wide, _ = training_sets(_kinds("r", [False] * 5 + [True] * 5), _kinds("s", [False] * 12 + [True] * 28), (1, 2, 4),
                            seed=3, match_tumour_free=True)
    assert sum(c.endswith("f") for c in wide["synthetic"].case_ids) == 5
    assert sum(c.endswith("f") for c in wide["synthetic_x2"].case_ids) == 10  # the share kept at 2 x N ...
    assert set(wide["synthetic"].case_ids) <= set(wide["synthetic_x2"].case_ids)  # ... and the smaller set inside it
    assert "synthetic_x4" not in wide

    with pytest.raises(ValueError, match="8 tumour-free and 52 tumour cases cannot fill 30"):
        training_sets(real, synthetic, (1,), seed=0, match_tumour_free=True)


def test_utility_saves_the_masks_it_scores(monkeypatch, tmp_path):
    """eval.save_predictions: each segmenter's masks on the test cases land in <set>_seed<k>.npz, and they are the
    masks its scores were read from (known bad: another seed's or set's masks, or masks saved before a threshold):
    the Dice of the saved masks against the test labels is the report's per-case Dice, per set and seed."""
    import medidiff.eval.segmentation as seg
    import medidiff.eval.utility as ut
    from medidiff.eval.config import EvalConfig
    from medidiff.eval.data import CaseSet

    labels = torch.from_numpy(_cases(3, 2))  # (5, 3, 4, 4, 4): three tumours, two tumour-free brains
    test = CaseSet("real_heldout", torch.zeros(5, 4, 4, 4, 4), labels, [f"c{i}" for i in range(5)])
    sets = {k: CaseSet(k, torch.zeros(2, 4, 4, 4, 4), labels[:2].clone(), ["a", "b"]) for k in ("real", "synthetic")}

    def drawn(model):  # a different mask per (set, seed): a shifted copy of the truth and a false voxel
        name, seed = model
        pred = labels.clone()
        pred[:, :, 0, 0, (1 if name == "real" else 2) + seed] = True
        return pred

    class Bank:
        histories = {(k, s): ut.TrainingHistory(1, 1, 1, 0.5, "max_epochs", [0.5], 2, 0) for k in sets for s in (0, 1)}

        def __init__(self) -> None:
            self.sets = sets

        def get(self, name, seed):
            return name, seed

    monkeypatch.setattr(seg, "predict", lambda model, images, **kw: drawn(model))
    out = ut.utility_experiment(Bank(), test, EvalConfig(seeds=[0, 1], bootstrap=200), (1.0, 1.0, 1.0),
                                predictions=tmp_path / "utility_predictions")
    saved = sorted(p.name for p in (tmp_path / "utility_predictions").iterdir())
    assert saved == ["real_seed0.npz", "real_seed1.npz", "synthetic_seed0.npz", "synthetic_seed1.npz"]
    for name in sets:
        for k, seed in enumerate((0, 1)):
            z = np.load(tmp_path / "utility_predictions" / f"{name}_seed{seed}.npz")
            assert z["masks"].dtype == bool and (z["masks"] == drawn((name, seed)).numpy()).all()
            assert list(z["case_ids"]) == test.case_ids and list(z["regions"]) == ["WT", "TC", "ET"]
            rescored = seg.segmentation_scores(torch.from_numpy(z["masks"]), labels, (1.0, 1.0, 1.0)).dice
            assert np.allclose(rescored, np.asarray(out["training_sets"][name]["per_case"]["dice"])[k])
    # off (the default): nothing written
    ut.utility_experiment(Bank(), test, EvalConfig(seeds=[0], bootstrap=200), (1.0, 1.0, 1.0))
    assert len(list(tmp_path.iterdir())) == 1
