"""The nearest-neighbour audit flags planted copies and leaves fresh phantom cases alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medidiff.data.phantom import PhantomSpec, case_seed, make_phantom_case
from medidiff.eval.memorisation import audit, image_embedding, pearson_matrix, reference_similarities

SHAPE = (32, 32, 24)


def _scaled(case) -> torch.Tensor:
    """(4, X, Y, Z) of a generated case scaled like the data pipeline: brain percentiles -> [-1, 1], bg -1."""
    a = np.stack([case.images[m] for m in ("t1n", "t1c", "t2w", "t2f")]).astype(np.float32)
    brain = a.any(0)
    x = np.full(a.shape, -1.0, np.float32)
    for k in range(4):
        lo, hi = np.percentile(a[k][brain], [0.5, 99.5])
        x[k][brain] = np.clip((a[k][brain] - lo) / (hi - lo) * 2 - 1, -1, 1)
    return torch.from_numpy(x)


def _phantoms(seed: int, n: int) -> torch.Tensor:
    """(n, 4, X, Y, Z) phantoms, scaled (_scaled)."""
    spec = PhantomSpec(shape=SHAPE, tumour_fraction=1.0)
    return torch.stack([_scaled(make_phantom_case(case_seed(seed, i), spec=spec)) for i in range(n)])


@pytest.fixture(scope="module")
def data():
    return _phantoms(0, 8), _phantoms(1, 6)


def test_pearson_is_one_on_itself_and_ignores_intensity_scale():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(3, 50, generator=g)
    s = pearson_matrix(a, torch.cat([a[:1] * 3 + 2, -a[1:2]]))
    assert s[0, 0] == pytest.approx(1.0) and s[1, 1] == pytest.approx(-1.0)
    ref, idx = reference_similarities(torch.cat([a, a[:1]]))  # case 3 duplicates case 0
    assert ref[0] == pytest.approx(1.0) and idx[0] == 3 and idx[3] == 0
    assert ref[1] < 0.9  # never matched with itself


def test_audit_flags_copy_and_noised_copy_not_fresh_phantoms(data):
    train, fresh = data
    g = torch.Generator().manual_seed(0)
    copy = train[2]
    noised = (train[5] + 0.1 * torch.randn(train[5].shape, generator=g)).clamp(-1, 1)
    synthetic = torch.cat([copy[None], noised[None], fresh])
    res = audit(image_embedding(train), image_embedding(synthetic), percentile=99, margin=0.5)
    assert res.flagged.tolist() == [True, True] + [False] * len(fresh)
    assert res.nn_index[0] == 2 and res.nn_index[1] == 5
    assert res.similarity[0] == pytest.approx(1.0)
    assert res.threshold > res.reference_percentile_value  # margin < 1 is stricter than the percentile
    s = res.summary()
    assert s["flagged"] == 2 and s["reference_nn_similarity"]["n"] == len(train)


def test_control_cases_are_audited_with_the_same_rule(data):
    train, fresh = data
    res = audit(image_embedding(train[:6]), image_embedding(fresh[:2]), control=image_embedding(train[6:]))
    assert res.control_flagged is not None and not res.control_flagged.any()
    assert res.summary()["control_heldout_real"]["n"] == 2


def test_margin_one_is_the_plain_percentile_rule(data):
    train, fresh = data
    res = audit(image_embedding(train), image_embedding(fresh), percentile=90, margin=1.0)
    ref, _ = reference_similarities(image_embedding(train))
    assert res.threshold == pytest.approx(np.percentile(ref, 90))
    with pytest.raises(ValueError):
        audit(image_embedding(train), image_embedding(fresh), margin=0.0)


def test_planted_copies_of_every_kind_are_flagged_and_heldout_cases_are_not(data):
    from medidiff.eval.memorisation import CONTROL_KINDS, control_rates

    train, fresh = data
    rates = control_rates(image_embedding, train, fresh)
    for kind in CONTROL_KINDS:
        assert rates["planted"][kind]["rate"] >= 0.9, (kind, rates["planted"][kind])
    assert rates["heldout_real"]["rate"] <= 0.05, rates["heldout_real"]


def _anatomy(seed: int, n: int) -> torch.Tensor:
    """(n, 4, 48, 56, 40) anatomy cases (one template under warps and rotations), scaled (_scaled)."""
    from medidiff.data.anatomy import AnatomySpec, make_anatomy_case

    spec = AnatomySpec(shape=(48, 56, 40), tumour_fraction=0.8)
    return torch.stack([_scaled(make_anatomy_case(case_seed(seed, i), spec=spec)) for i in range(n)])


def test_rotated_copies_of_look_alike_cases_are_caught_by_the_rotated_forms():
    # Anatomy cases are one brain under warps: a copy rotated 8 degrees is about as far from its source
    # as another case is. Matching every training case in rotated forms too catches it, and held-out
    # cases stay unflagged.
    from medidiff.eval.memorisation import control_rates, image_embedding, training_forms

    train, fresh = _anatomy(0, 24), _anatomy(1, 10)
    without = control_rates(image_embedding, train, fresh, kinds=("rotated",))
    rates = control_rates(image_embedding, train, fresh, kinds=("rotated",),
                          train_embeddings=(image_embedding(train), training_forms(train)))
    assert without["planted"]["rotated"]["rate"] <= 0.5, without  # the blind spot this closes (8 of 20 measured)
    assert rates["planted"]["rotated"]["rate"] >= 0.9, rates
    assert rates["heldout_real"]["rate"] == 0.0, rates["heldout_real"]


def test_a_rotated_form_of_a_case_matches_the_case_rotated_in_the_image():
    from medidiff.eval.memorisation import image_embeddings, pearson_matrix, plant_controls

    case = _anatomy(2, 1)
    rotated = plant_controls(case, ("rotated",))["rotated"]  # 8 degrees in the axial plane, in voxel space
    plain, near, wrong_way, other_plane = image_embeddings(case, forms=("plain", (0, 10.0), (0, -10.0), (2, 10.0)))
    target = image_embeddings(rotated)[0]
    r = {name: float(pearson_matrix(target, e)[0, 0])
         for name, e in (("plain", plain), ("near", near), ("wrong_way", wrong_way), ("other_plane", other_plane))}
    assert r["near"] > max(r["plain"], r["wrong_way"], r["other_plane"]), r
