"""Masks only from training folds, and evaluate's refusal of sets that saw held-out labels (issue 14)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medidiff.data.config import DataConfig
from medidiff.data.manifest import build_brats_manifest, load_manifest, write_manifest
from medidiff.data.mask_sources import (
    check_synthetic_provenance,
    file_sha256,
    select_mask_cases,
    training_data_record,
)
from medidiff.data.phantom import write_phantom_dataset
from medidiff.errors import DataError, MedidiffError


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("masks")
    write_phantom_dataset(tmp / "real", 8, shape=(16, 16, 16), seed=0, tumour_fraction=1.0, progress=False)
    path = write_manifest(build_brats_manifest(tmp / "real", num_folds=2), tmp / "real.json")
    return path, tmp / "real"


def test_default_takes_only_the_folds_the_model_trained_on(manifest):
    path, root = manifest
    items = load_manifest(path, root)
    assert {it["fold"] for it in items} == {0, 1}
    for held in (0, 1):
        picked = select_mask_cases(path, root, DataConfig(manifest=str(path), fold=held))
        assert picked and all(it["fold"] != held for it in picked)
        assert [it["case_id"] for it in picked] == [it["case_id"] for it in items if it["fold"] != held]
    everything = select_mask_cases(path, root, DataConfig(manifest=str(path), fold=None))
    assert len(everything) == len(items)  # trained on every fold: every mask is a training mask


def test_another_manifest_needs_named_folds(manifest, tmp_path):
    path, root = manifest
    other = tmp_path / "other.json"
    other.write_text(path.read_text() + "\n")  # same cases, different file: cannot prove it is the model's
    with pytest.raises(MedidiffError, match="--mask-folds"):
        select_mask_cases(other, root, DataConfig(manifest=str(path), fold=0))
    picked = select_mask_cases(other, root, DataConfig(manifest=str(path), fold=0), folds=[1])
    assert picked and {it["fold"] for it in picked} == {1}
    with pytest.raises(MedidiffError, match=r"--mask-folds \[7\]"):
        select_mask_cases(path, root, DataConfig(manifest=str(path), fold=0), folds=[7])


def _prov(case_id: str, fold: int, sha: str, model_fold: int | None = 0, model_sha: str | None = None) -> dict:
    """What generate writes (medidiff.io.source_record's public record: the case id as a hash)."""
    import hashlib

    mask = {"case_id_sha256": hashlib.sha256(case_id.encode()).hexdigest()[:16], "manifest_sha256": sha[:16],
            "fold": fold}
    return {"mask": mask, "training_data": {"manifest_sha256": (model_sha or sha)[:16], "fold": model_fold}}


def test_evaluation_refuses_test_fold_masks_and_other_models(manifest):
    path, root = manifest
    sha = file_sha256(path)
    items = load_manifest(path, root)
    folds = {it["case_id"]: it["fold"] for it in items}
    train_id = next(c for c, f in folds.items() if f == 1)
    test_id = next(c for c, f in folds.items() if f == 0)
    kw = dict(manifest_sha256=sha, fold=0, case_folds=folds)
    ok = check_synthetic_provenance([_prov(train_id, 1, sha)] * 2, ["g/case_0000", "g/case_0001"], **kw)
    assert ok["mask_cases_by_fold"] == {"1": 2} and ok["cases_without_verified_training_manifest"] == 0

    with pytest.raises(DataError, match=rf"g/case_0001/provenance.json: .*{test_id}.*held-out fold 0"):
        check_synthetic_provenance([_prov(train_id, 1, sha), _prov(test_id, 0, sha)], ["g/case_0000", "g/case_0001"], **kw)
    with pytest.raises(DataError, match="held out fold 1, the evaluation holds out fold 0"):
        check_synthetic_provenance([_prov(train_id, 1, sha, model_fold=1)], ["g/case_0000"], **kw)
    with pytest.raises(DataError, match="trained on every fold"):
        check_synthetic_provenance([_prov(train_id, 1, sha, model_fold=None)], ["g/case_0000"], **kw)
    with pytest.raises(DataError, match="trained on another manifest"):
        check_synthetic_provenance([_prov(train_id, 1, sha, model_sha="f" * 64)], ["g/case_0000"], **kw)
    # sets written before the source records existed: "mask": "MANIFEST#CASE" is looked up by case id
    with pytest.raises(DataError, match=test_id):
        check_synthetic_provenance([{"mask": f"{path}#{test_id}"}], ["g/case_0000"], **kw)
    old = check_synthetic_provenance([{"mask": f"{path}#{train_id}"}, {}], ["a", "b"], **kw)
    assert old["mask_cases_by_fold"] == {"1": 1} and old["cases_without_verified_training_manifest"] == 2
    # a folder of label maps named after their cases (write_model_grid_masks)
    with pytest.raises(DataError, match=test_id):
        check_synthetic_provenance([{"mask": f"/masks/{test_id}.nii.gz"}], ["g/case_0000"], **kw)
    folder = check_synthetic_provenance([{"mask": f"/masks/{train_id}.nii.gz"}, {"mask": "/masks/x.nii"}], ["a", "b"], **kw)
    assert folder["mask_cases_by_fold"] == {"1": 1} and folder["mask_files_not_matched_to_a_case"] == 1


def test_a_mask_another_model_generated_answers_to_that_models_training_data(manifest):
    """The two-stage recipe: a label map generated by a first model conditions the second. The first model's
    training record is checked as the second's is: one that saw the held-out fold could have copied a test
    case's labels into the set segmenters train on."""
    path, _ = manifest
    sha = file_sha256(path)
    kw = dict(manifest_sha256=sha, fold=0, case_folds={})

    def two_stage(mask_model_fold: int | None, mask_model_sha: str = sha) -> dict:
        first = {"file_sha256": "0" * 16, "generated_case": "case_0000", "model_hash": "ab" * 8,
                 "training_data": {"manifest_sha256": mask_model_sha[:16], "fold": mask_model_fold}}
        return {"mask": first, "training_data": {"manifest_sha256": sha[:16], "fold": 0}}

    ok = check_synthetic_provenance([two_stage(0)] * 2, ["g/case_0000", "g/case_0001"], **kw)
    assert ok["masks_generated_by_a_checked_model"] == 2 and ok["mask_files_not_matched_to_a_case"] == 0
    with pytest.raises(DataError, match="g/case_0000/provenance.json: the model that generated its conditioning "
                                        "mask trained on every fold"):
        check_synthetic_provenance([two_stage(None)], ["g/case_0000"], **kw)
    with pytest.raises(DataError, match="generated its conditioning mask held out fold 2"):
        check_synthetic_provenance([two_stage(2)], ["g/case_0000"], **kw)
    with pytest.raises(DataError, match="generated its conditioning mask trained on another manifest"):
        check_synthetic_provenance([two_stage(0, "e" * 64)], ["g/case_0000"], **kw)
    older = two_stage(0)
    older["mask"]["training_data"] = None  # a first stage from a generate that recorded no training data
    counted = check_synthetic_provenance([older], ["g/case_0000"], **kw)
    assert counted["masks_generated_by_a_model_without_training_record"] == 1
    assert counted["mask_files_not_matched_to_a_case"] == 0


def test_training_data_record_hashes_a_readable_manifest(manifest, tmp_path):
    path, _ = manifest
    rec = training_data_record(DataConfig(manifest=str(path), fold=1))
    assert rec == {"manifest_sha256": file_sha256(path)[:16], "fold": 1}
    assert training_data_record(DataConfig(manifest=str(tmp_path / "gone.json"), fold=0))["manifest_sha256"] is None


def test_evaluate_cli_refuses_a_test_fold_mask_in_one_line(manifest, tmp_path, capsys):
    from medidiff.cli import evaluate_cmd
    from medidiff.cli import main as cli_main
    from tests.eval import write_synthetic_phantoms

    path, root = manifest
    folds = {it["case_id"]: it["fold"] for it in load_manifest(path, root)}
    test_id = next(c for c, f in folds.items() if f == 0)
    gen = tmp_path / "gen"
    write_synthetic_phantoms(gen, 2, (16, 16, 16), seed=5)
    (gen / "case_0001" / "provenance.json").write_text(json.dumps(_prov(test_id, 0, file_sha256(path))))
    commands = cli_main.COMMANDS if evaluate_cmd in cli_main.COMMANDS else [*cli_main.COMMANDS, evaluate_cmd]
    old, cli_main.COMMANDS = cli_main.COMMANDS, commands
    try:
        rc = cli_main.main(["evaluate", "--real", str(path), "--root", str(root), "--synthetic", str(gen),
                            "--out", str(tmp_path / "r"), "--tasks", "utility", "--no-progress",
                            "--set", "data.roi=[16,16,16]", "--set", "data.fold=0", "--set", "data.cache=none"])
    finally:
        cli_main.COMMANDS = old
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert "case_0001/provenance.json" in err and test_id in err and not (tmp_path / "r" / "report.json").exists()


def test_a_test_case_is_refused_whatever_manifest_file_or_folder_it_came_through(manifest):
    """A held-out case's label map must be refused when it arrives through a byte-different copy of
    the manifest or as a file of a folder (named after its case, as write_model_grid_masks does)."""
    import hashlib

    path, root = manifest
    folds = {it["case_id"]: it["fold"] for it in load_manifest(path, root)}
    test_id = next(c for c, f in folds.items() if f == 0)
    train_id = next(c for c, f in folds.items() if f == 1)
    kw = dict(manifest_sha256=file_sha256(path), fold=0, case_folds=folds)

    def h(text: str) -> str:
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    copy = {"mask": {"case_id_sha256": h(test_id), "manifest_sha256": "0" * 16, "fold": 1}}
    with pytest.raises(DataError, match=test_id):
        check_synthetic_provenance([copy], ["g/case_0000"], **kw)
    folder = {"mask": {"file_sha256": "f" * 16, "file_stem_sha256": h(test_id)}}
    with pytest.raises(DataError, match=test_id):
        check_synthetic_provenance([folder], ["g/case_0000"], **kw)
    fine = {"mask": {"file_sha256": "f" * 16, "file_stem_sha256": h(train_id)}}
    other = {"mask": {"file_sha256": "e" * 16, "file_stem_sha256": h("not-a-case")}}
    summary = check_synthetic_provenance([fine, other], ["a", "b"], **kw)
    assert summary["mask_cases_by_fold"] == {"1": 1} and summary["mask_files_not_matched_to_a_case"] == 1


def test_held_out_masks_are_refused_only_where_they_leak(manifest):
    """A held-out mask leaks only into segmenters trained on the synthetic set (utility); a model
    of another manifest matters only when there is a held-out fold to protect."""
    path, root = manifest
    folds = {it["case_id"]: it["fold"] for it in load_manifest(path, root)}
    test_id = next(c for c, f in folds.items() if f == 0)
    sha = file_sha256(path)
    held = [_prov(test_id, 0, sha)]
    kw = dict(manifest_sha256=sha, fold=0, case_folds=folds)
    for tasks in (["utility"], ["utility", "fidelity"], None):
        with pytest.raises(DataError, match=test_id):
            check_synthetic_provenance(held, ["g/case_0000"], tasks=tasks, **kw)
    ok = check_synthetic_provenance(held, ["g/case_0000"], tasks=["fidelity", "image", "memorisation", "tissue"], **kw)
    assert ok["mask_cases_by_fold"] == {"0": 1}
    other_model = [_prov(test_id, 1, sha, model_sha="f" * 64)]
    with pytest.raises(DataError, match="another manifest"):
        check_synthetic_provenance(other_model, ["g/case_0000"], tasks=["image"], **kw)
    # no held-out fold (e.g. realism against an independent real set): nothing to protect
    check_synthetic_provenance(other_model, ["g/case_0000"], manifest_sha256=sha, fold=None, case_folds=folds,
                               tasks=["image"])
