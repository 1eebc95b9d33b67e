"""Experiment tracking: an MLflow file store read back with MLflow's own client, W&B through a
stand-in module that records its calls, rank 0 alone, resume into the same run, clear refusals."""

from __future__ import annotations

import json
import logging
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from medidiff.cli.main import main
from medidiff.config import ConfigError, flatten, load_config
from medidiff.errors import MedidiffError
from medidiff.training.config import LogConfig, MLflowConfig, WandbConfig
from medidiff.training.run_log import RunLog
from medidiff.training.tracking import MLFLOW_RUN_FILE, WANDB_RUN_FILE, MLflowTracker, param_values
from medidiff.viz import write_png
from tests.training import toy_train

# a nested config like the resolved experiment's, with the value types it holds
CONFIG = {"name": "toy", "seed": 7, "net": {"channels": [8, 16], "attention": None},
          "train": {"lr": 0.01, "max_steps": 4, "compile": False, "precision": "fp32"}, "data": {"label_map": {"4": 3}}}


def _png_preview(step: int, module: torch.nn.Module, out_dir: Path) -> Path:
    with torch.no_grad():
        y = module(toy_train.ToyData().x[:1])[0, 0].numpy()  # (8, 8, 8)
    grey = np.clip((y[:, :, 4] - y.min()) / max(float(np.ptp(y)), 1e-6) * 255, 0, 255).astype(np.uint8)
    return write_png(out_dir / f"step_{step:08d}.png", grey)


def _fit(run_dir: Path, steps: int, tracking: LogConfig, *, resume: bool = False, config: dict | None = None):
    (run_dir / "resolved_config.yaml").parent.mkdir(parents=True, exist_ok=True)
    (run_dir / "resolved_config.yaml").write_text("name: toy\n")
    cfg = toy_train.config(0, steps, grad_accum=1, ckpt_every=2, preview_every=2)
    return toy_train.fit(toy_train.ToyNet(), toy_train.make_loss(), toy_train.ToyData(), cfg, run_dir=run_dir, seed=7,
                         resume=resume, record={"config": config or CONFIG}, progress=False,
                         preview_fn=_png_preview, tracking=tracking)


def _jsonl(run_dir: Path) -> list[dict]:
    return [json.loads(ln) for ln in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_mlflow_file_store_gets_scalars_params_previews_and_resume_appends(tmp_path):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    store = f"file://{tmp_path / 'mlruns'}"
    tracking = LogConfig(mlflow=MLflowConfig(tracking_uri=store, experiment="toys", run_name="first"))
    run_dir = tmp_path / "run"
    _fit(run_dir, 4, tracking)
    saved = json.loads((run_dir / MLFLOW_RUN_FILE).read_text())
    client = MlflowClient(tracking_uri=store)
    run = client.get_run(saved["run_id"])
    assert run.info.status == "FINISHED" and run.info.run_name == "first"
    # the resolved config, flattened, as parameters
    assert run.data.params == param_values(flatten(CONFIG))
    assert run.data.params["net.channels"] == "[8, 16]" and run.data.params["data.label_map.4"] == "3"
    # the same scalars as metrics.jsonl, at the same steps
    # (a file store names loss/c0 loss.c0: "loss" is a file there, so it cannot be a folder too)
    rows = _jsonl(run_dir)
    numeric = [k for k in rows[0] if k != "step"]
    assert {"loss", "lr", "loss/c0", "loss/c1", "steps_per_s"} <= set(numeric)
    assert set(client.get_run(run.info.run_id).data.metrics) == {k.replace("/", ".") for k in numeric}
    for key in numeric:
        history = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, key.replace("/", ".")))
        assert history == [(r["step"], pytest.approx(r[key])) for r in rows], key
    arts = sorted(a.path for a in client.list_artifacts(run.info.run_id, "previews"))
    assert arts == ["previews/step_00000002.png", "previews/step_00000004.png"]
    assert "resolved_config.yaml" in [a.path for a in client.list_artifacts(run.info.run_id)]

    # resume (train.max_steps may change): the same MLflow run continues, no second run appears
    _fit(run_dir, 6, tracking, resume=True, config={**CONFIG, "train": {**CONFIG["train"], "max_steps": 6}})
    assert json.loads((run_dir / MLFLOW_RUN_FILE).read_text())["run_id"] == saved["run_id"]
    runs = client.search_runs([client.get_experiment_by_name("toys").experiment_id])
    assert [r.info.run_id for r in runs] == [saved["run_id"]]
    run = client.get_run(saved["run_id"])
    assert run.info.status == "FINISHED"
    assert sorted({m.step for m in client.get_metric_history(saved["run_id"], "loss")}) == [1, 2, 3, 4, 5, 6]
    assert run.data.params["train.max_steps"] == "4"  # params are immutable: the change is a tag
    assert run.data.tags["changed_on_resume.train.max_steps"] == "4 -> 6 at step 4"
    arts = sorted(a.path for a in client.list_artifacts(run.info.run_id, "previews"))
    assert arts[-1] == "previews/step_00000006.png"


def test_mlflow_resume_after_an_interruption_logs_no_step_twice(tmp_path):
    # killed after step 3 was logged but before its checkpoint: the resume from step 2 trains and
    # logs step 3 again; the reopened MLflow run keeps one point per step
    pytest.importorskip("mlflow")
    import shutil

    from mlflow.tracking import MlflowClient

    from medidiff.training import checkpoint as ckpt

    store = f"file://{tmp_path / 'mlruns'}"
    tracking = LogConfig(mlflow=MLflowConfig(tracking_uri=store, experiment="toys"))
    run_dir = tmp_path / "run"
    _fit(run_dir, 3, tracking)
    latest = ckpt.latest_complete(ckpt.checkpoint_root(run_dir))
    assert latest.name == "step_00000003"
    shutil.rmtree(latest)  # as if killed before step 3's checkpoint was complete
    _fit(run_dir, 4, tracking, resume=True, config={**CONFIG, "train": {**CONFIG["train"], "max_steps": 4}})
    run_id = json.loads((run_dir / MLFLOW_RUN_FILE).read_text())["run_id"]
    client = MlflowClient(tracking_uri=store)
    for key in client.get_run(run_id).data.metrics:  # every key, not only loss: one point per step
        steps = sorted(m.step for m in client.get_metric_history(run_id, key))
        assert steps == sorted(set(steps)) and steps[-1] == 4, (key, steps)
    assert sorted(m.step for m in client.get_metric_history(run_id, "loss")) == [1, 2, 3, 4]


class FakeWandb(types.ModuleType):
    """Records what medidiff asks of wandb; nothing is written or sent."""

    def __init__(self) -> None:
        super().__init__("wandb")
        self.calls: list[tuple] = []

    def init(self, **kw):
        self.calls.append(("init", kw))
        fake = self

        class Config:
            def update(self, d, allow_val_change=False):
                fake.calls.append(("config.update", dict(d), allow_val_change))

        class Run:
            id = kw.get("id") or "abc123"
            config = Config()

            def log(self, values, step=None):
                fake.calls.append(("log", step, dict(values)))

            def save(self, path, base_path=None, policy="live"):
                fake.calls.append(("save", str(Path(path).relative_to(base_path)), policy))

            def finish(self, exit_code=0):
                fake.calls.append(("finish", exit_code))

        return Run()


def test_wandb_offline_gets_the_same_scalars_config_and_previews(tmp_path, monkeypatch):
    fake = FakeWandb()
    monkeypatch.setitem(sys.modules, "wandb", fake)
    run_dir = tmp_path / "run"
    tracking = LogConfig(wandb=WandbConfig(project="medidiff-tests"))
    _fit(run_dir, 4, tracking)
    (name, init), rest = fake.calls[0], fake.calls[1:]
    assert name == "init" and init["mode"] == "offline" and init["project"] == "medidiff-tests"
    assert init["dir"] == str(run_dir) and init["id"] is None and init["name"] == "run"
    assert rest[0] == ("config.update", param_values(flatten(CONFIG)), True)
    logged = {}
    for c in rest:
        if c[0] == "log":
            logged.setdefault(c[1], {}).update(c[2])
    rows = _jsonl(run_dir)
    assert sorted(logged) == [r["step"] for r in rows]
    for r in rows:
        assert logged[r["step"]] == pytest.approx({k: v for k, v in r.items() if k != "step"})
    saves = [c[1] for c in rest if c[0] == "save"]
    assert saves == ["resolved_config.yaml", "previews/step_00000002.png", "previews/step_00000004.png"]
    assert rest[-1] == ("finish", 0)

    fake.calls.clear()
    _fit(run_dir, 6, tracking, resume=True)
    init = fake.calls[0][1]
    assert init["id"] == "abc123" and init["resume"] == "allow"  # the same W&B run continues
    assert json.loads((run_dir / WANDB_RUN_FILE).read_text())["id"] == "abc123"
    assert [c[1] for c in fake.calls if c[0] == "log"] == [5, 6]


def test_only_an_enabled_run_log_opens_trackers(tmp_path, monkeypatch):
    # fit enables the RunLog on rank 0 alone (enabled=dist.is_main): the others start no run
    fake = FakeWandb()
    monkeypatch.setitem(sys.modules, "wandb", fake)
    tracking = LogConfig(mlflow=MLflowConfig(tracking_uri=f"file://{tmp_path / 'mlruns'}"),
                         wandb=WandbConfig(project="p"))
    rl = RunLog(tmp_path / "run", enabled=False, tracking=tracking, params={"a": 1})
    rl.log(1, {"loss": 1.0})
    rl.artifact(tmp_path / "x.png")
    rl.close()
    assert fake.calls == [] and not (tmp_path / "mlruns").exists() and not (tmp_path / "run").exists()


def test_a_failing_tracker_never_stops_training(tmp_path, caplog):
    pytest.importorskip("mlflow")
    tracker = MLflowTracker(MLflowConfig(tracking_uri=f"file://{tmp_path / 'mlruns'}"), tmp_path, params={},
                            resume_step=None, default_name="x")

    def down(*args, **kwargs):
        raise ConnectionError("server went away")

    tracker.client.log_batch = down  # type: ignore[method-assign]
    with caplog.at_level(logging.WARNING):
        for step in range(3):
            tracker.log_metrics(step, {"loss": 1.0})
        tracker.close("FINISHED")
    text = caplog.text
    assert "server went away" in text and text.count("server went away") == 1  # warned once
    assert "3 call(s) failed" in text


def test_missing_packages_and_bad_uris_are_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb fails, as when not installed
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"name: t\noutput_dir: {tmp_path}\nlog:\n  wandb: {{project: p, mode: offline}}\n")
    assert main(["train", "-c", str(cfg)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "log.wandb" in err and "pip install wandb" in err
    assert not (tmp_path / "t").exists()  # refused before the run folder was touched
    with pytest.raises(MedidiffError, match="log.mlflow.tracking_uri nope://x: cannot start an MLflow run"):
        pytest.importorskip("mlflow")
        RunLog(tmp_path / "run", tracking=LogConfig(mlflow=MLflowConfig(tracking_uri="nope://x")))


@pytest.mark.parametrize("override, message", [
    ("log.mlflow.trackin_uri=file:///x", "log.mlflow.trackin_uri (did you mean log.mlflow.tracking_uri?)"),
    ("log.mlflow={tracking_uri: 'file:///x', experiment: 3}", "log.mlflow.experiment: expected a string, got 3"),
    ("log.wandb={project: p, mode: onlin}", "log.wandb.mode: must be one of ['offline', 'online'], got 'onlin' (did you mean 'online'?)"),
    ("log.wandb.project=", "log.wandb: project is empty"),
    ("log.mlflow.tracking_uri=http://me:secret@host:5000", "tracking_uri holds credentials"),
    ("log.mlflow=file:///x", "log.mlflow: expected a mapping (section MLflowConfig)"),
    ("log.mlflow.experiment=e", "missing required key log.mlflow.tracking_uri"),
])
def test_log_section_is_typed(override, message):
    with pytest.raises(ConfigError) as info:
        load_config(None, [override])
    assert message in str(info.value) and "\n" not in str(info.value)
