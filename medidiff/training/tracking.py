"""Experiment trackers beside RUN/metrics.jsonl and TensorBoard: MLflow and Weights & Biases.

Hospital ML teams track runs in MLflow (often a self-hosted server) or W&B in offline mode. Both
are optional and configured in the ``log:`` section (:class:`~medidiff.training.config.LogConfig`);
neither package is imported, nor anything contacted, unless its key is set. What they get, from
:class:`~medidiff.training.run_log.RunLog` on rank 0 only:

* every scalar metrics.jsonl holds that TensorBoard also gets (finite numbers), at its step,
  under the same key; except that a local MLflow store gets ``loss.c0`` for ``loss/c0``: it
  keeps each metric in a file named by its key, so ``loss`` (a file) and ``loss/c0`` (a file in
  a folder ``loss``) cannot both exist there (servers keep the slash, which their UI groups by);
* the resolved config, flattened (``train.lr``), as parameters: MLflow params (values cut at
  :data:`PARAM_CHARS`, the limit of older servers; the full text is the resolved_config.yaml
  artifact) and the W&B run config;
* preview PNGs (``previews/``) and resolved_config.yaml as artifacts (W&B: run files).

Resume continues the same tracked run. Its id is kept in the run folder (``mlflow_run.json``,
``wandb_run.json``); ``--resume`` reopens that run, a fresh start makes a new one. The steps
between the checkpoint and the interruption are trained and logged again: MLflow would keep both
points of such a step (it cannot delete metric history), so a reopened MLflow run skips the steps
it already holds, key by key (up to the last step of that key's history, read once per key on
the background thread; resume is exact, so they are the same values on CPU and equal up to GPU
nondeterminism); W&B drops steps below its last one itself. MLflow params cannot change once logged: a setting
changed on resume (those :data:`~medidiff.training.loop.RESUME_MAY_CHANGE` allows) is recorded
as a tag ``changed_on_resume.<key>``.

A tracker never stops training. Starting a run is synchronous, so a wrong URI or a missing
package is one clear line before the first step; after that MLflow calls run in order on one
background thread: a server that went down makes MLflow retry with backoff for minutes, which
on the training thread would stall rank 0 and so every rank at its next collective. Failures
are warned once and counted; at the end the thread gets :data:`FLUSH_TIMEOUT_S` to send what is
queued (a SLURM job must still reach its requeue). metrics.jsonl stays the complete record.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

from medidiff.errors import MedidiffError
from medidiff.files import write_text_atomic
from medidiff.training.config import LogConfig, MLflowConfig, WandbConfig

log = logging.getLogger(__name__)

__all__ = ["Tracker", "RunStatus", "MLflowTracker", "WandbTracker", "check_trackers", "open_trackers",
           "param_values", "scalars", "MLFLOW_RUN_FILE", "WANDB_RUN_FILE", "PARAM_CHARS", "FLUSH_TIMEOUT_S"]

MLFLOW_RUN_FILE = "mlflow_run.json"
WANDB_RUN_FILE = "wandb_run.json"
PARAM_CHARS = 500  # MLflow < 2 servers refuse longer param values (newer ones: 6000)
FLUSH_TIMEOUT_S = 30.0
# MLflow's REST API takes at most 1000 metrics and 100 params per log_batch call
_MAX_METRICS, _MAX_PARAMS = 1000, 100

RunStatus = Literal["FINISHED", "FAILED", "KILLED"]  # KILLED: stopped early (signal, time limit); resumable

# package to import -> what to pip install
_PACKAGES = {"mlflow": "mlflow-skinny (or mlflow)", "wandb": "wandb"}


class Tracker(Protocol):
    def log_metrics(self, step: int, values: Mapping[str, float]) -> None: ...

    def log_artifact(self, path: Path, folder: str) -> None: ...

    def close(self, status: RunStatus) -> None: ...


def _installed(module: str) -> bool:
    if module in sys.modules:  # also a test's stand-in; None there means "import fails"
        return sys.modules[module] is not None
    return importlib.util.find_spec(module) is not None


def check_trackers(cfg: LogConfig | None) -> None:
    """Raise one line naming the key and the package when a configured tracker is not installed.

    Cheap (no import): run it on every rank before any work, so all ranks stop together."""
    if cfg is None:
        return
    for key, module in (("mlflow", "mlflow"), ("wandb", "wandb")):
        if getattr(cfg, key) is not None and not _installed(module):
            raise MedidiffError(f"log.{key} is set but the {module} package is not installed: "
                                f"pip install {_PACKAGES[module]}, or remove log.{key} from the config")


def param_values(flat: Mapping[str, Any]) -> dict[str, str]:
    """Flattened config values as text (strings as they are, the rest as JSON: ``[16, 32]``,
    ``null``, ``true``)."""
    return {k: v if isinstance(v, str) else json.dumps(v, default=str) for k, v in flat.items()}


def scalars(values: Mapping[str, Any]) -> dict[str, float]:
    """The values TensorBoard gets too: finite ints and floats, not bools."""
    return {k: float(v) for k, v in values.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    write_text_atomic(path, json.dumps(data, indent=2) + "\n")


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


class _Background:
    """Runs calls in order on one daemon thread; a failing call is warned about (once) and counted."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.failures = 0
        self._queue: queue.Queue[tuple[Callable[..., Any], tuple[Any, ...]] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._work, name=f"medidiff-{name}", daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        self._queue.put((fn, args))

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            fn, args = item
            try:
                fn(*args)
            except Exception as exc:  # noqa: BLE001 - a tracker must never stop training
                self.failures += 1
                if self.failures == 1:
                    log.warning("%s: %s failed (%s); training goes on, metrics.jsonl holds every value; "
                                "later failures are counted", self.name, getattr(fn, "__name__", fn), _one_line(exc))

    def close(self, timeout: float) -> None:
        self._queue.put(None)
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("%s: %d call(s) still queued after %.0f s were dropped (server unreachable?); "
                        "metrics.jsonl holds every value", self.name, self._queue.qsize(), timeout)
        if self.failures:
            log.warning("%s: %d call(s) failed in this run", self.name, self.failures)


def _local_store(uri: str) -> bool:
    scheme = urlsplit(uri).scheme
    return scheme in ("", "file") or (len(scheme) == 1 and os.name == "nt")  # C:\... is a path


class MLflowTracker:
    """One MLflow run per training run, reopened on resume (:mod:`the module docstring <medidiff.training.tracking>`)."""

    def __init__(self, cfg: MLflowConfig, run_dir: Path, *, params: Mapping[str, str], resume_step: int | None,
                 default_name: str) -> None:
        if _local_store(cfg.tracking_uri):
            # MLflow >= 3.7 refuses file stores unless this is set; the config asked for one, and
            # mlflow-skinny has no SQL store to offer instead
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        key = f"log.mlflow.tracking_uri {cfg.tracking_uri}"
        try:
            from mlflow.entities import Metric, Param, RunTag
            from mlflow.tracking import MlflowClient
        except ImportError as exc:
            raise MedidiffError(f"log.mlflow: cannot import mlflow ({_one_line(exc)}): pip install "
                                f"{_PACKAGES['mlflow']}") from None
        self._Metric, self._Param, self._RunTag = Metric, Param, RunTag
        self._file = run_dir / MLFLOW_RUN_FILE
        self._reopened = False  # a reopened run skips the steps each key already holds
        self._last_step: dict[str, int] = {}  # key -> last step in the run's history (reopened runs)
        self.uri = cfg.tracking_uri
        self._slash = "." if _local_store(cfg.tracking_uri) else "/"  # see the module docstring
        try:
            self.client = MlflowClient(tracking_uri=cfg.tracking_uri)
            saved = _read_json(self._file) if resume_step is not None else None
            self.run_id = self._reopen(saved, params, resume_step) if saved else None
            if self.run_id is None:
                exp = self.client.get_experiment_by_name(cfg.experiment)
                exp_id = exp.experiment_id if exp is not None else self.client.create_experiment(cfg.experiment)
                run = self.client.create_run(exp_id, run_name=cfg.run_name or default_name,
                                             tags={"medidiff.run_dir": str(run_dir.resolve())})
                self.run_id = run.info.run_id
                self._log_params(params)
        except MedidiffError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure to start is the URI's or the server's
            raise MedidiffError(f"{key}: cannot start an MLflow run ({_one_line(exc)})") from None
        _write_json(self._file, {"tracking_uri": cfg.tracking_uri, "experiment": cfg.experiment,
                                 "run_id": self.run_id})
        self._bg = _Background("mlflow")

    def _reopen(self, saved: dict[str, Any], params: Mapping[str, str], resume_step: int | None) -> str | None:
        """The saved run's id, set RUNNING again, or None when it is not on this store."""
        if saved.get("tracking_uri") != self.uri or not saved.get("run_id"):
            log.warning("%s: written for tracking_uri %s; this resume starts a new MLflow run",
                        self._file, saved.get("tracking_uri"))
            return None
        try:
            run = self.client.get_run(saved["run_id"])
        except Exception as exc:  # noqa: BLE001 - deleted run, other server: a new run keeps training going
            log.warning("MLflow run %s not found on %s (%s); this resume starts a new run", saved["run_id"],
                        self.uri, _one_line(exc))
            return None
        run_id = run.info.run_id
        self.client.update_run(run_id, status="RUNNING")
        self._reopened = True
        before = run.data.params
        self._log_params({k: v for k, v in params.items() if k not in before})
        changed = {k: v for k, v in params.items() if k in before and before[k] != _cut(v)}
        if changed:
            tags = [self._RunTag(f"changed_on_resume.{k}", _cut(f"{before[k]} -> {v} at step {resume_step}"))
                    for k, v in changed.items()]
            self.client.log_batch(run_id, tags=tags)
        return run_id

    def _log_params(self, params: Mapping[str, str]) -> None:
        items = [self._Param(k, _cut(v)) for k, v in params.items()]
        for i in range(0, len(items), _MAX_PARAMS):
            self.client.log_batch(self.run_id, params=items[i:i + _MAX_PARAMS])

    def log_metrics(self, step: int, values: Mapping[str, float]) -> None:
        now = int(time.time() * 1000)
        items = [self._Metric(k.replace("/", self._slash), v, now, step) for k, v in values.items()]
        self._bg.submit(self._send, items)

    def _send(self, items: list[Any]) -> None:
        """On the background thread: drop what a reopened run already holds, then log in batches."""
        if self._reopened:
            for key in {m.key for m in items} - set(self._last_step):
                history = self.client.get_metric_history(self.run_id, key)
                self._last_step[key] = max((m.step for m in history), default=-1)
            items = [m for m in items if m.step > self._last_step[m.key]]
        for i in range(0, len(items), _MAX_METRICS):
            self.client.log_batch(self.run_id, items[i:i + _MAX_METRICS])

    def log_artifact(self, path: Path, folder: str) -> None:
        self._bg.submit(self.client.log_artifact, self.run_id, str(path), folder or None)

    def close(self, status: RunStatus) -> None:
        self._bg.submit(self.client.set_terminated, self.run_id, status)
        self._bg.close(FLUSH_TIMEOUT_S)


def _cut(value: str) -> str:
    return value if len(value) <= PARAM_CHARS else value[:PARAM_CHARS - 3] + "..."


class WandbTracker:
    """One W&B run per training run (offline by default: files under RUN/wandb), resumed by id."""

    def __init__(self, cfg: WandbConfig, run_dir: Path, *, params: Mapping[str, str], resume_step: int | None,
                 default_name: str) -> None:
        try:
            import wandb
        except ImportError as exc:
            raise MedidiffError(f"log.wandb: cannot import wandb ({_one_line(exc)}): pip install wandb") from None
        self._file = run_dir / WANDB_RUN_FILE
        self.run_dir = run_dir
        saved = _read_json(self._file) if resume_step is not None else None
        run_id = saved.get("id") if saved and saved.get("project") == cfg.project else None
        try:
            # W&B's own timing of a resumed run: it drops steps below the last one it has
            self.run = wandb.init(project=cfg.project, entity=cfg.entity or None, name=cfg.run_name or default_name,
                                  mode=cfg.mode, dir=str(run_dir), id=run_id, resume="allow" if run_id else None)
            # values that a resume may change (train.max_steps, ...) are updated, not refused
            self.run.config.update(dict(params), allow_val_change=True)
        except Exception as exc:  # noqa: BLE001 - login, network (online), disk: one line before training
            raise MedidiffError(f"log.wandb (project {cfg.project}, mode {cfg.mode}): cannot start a W&B run "
                                f"({_one_line(exc)})") from None
        _write_json(self._file, {"project": cfg.project, "id": self.run.id, "mode": cfg.mode})
        self._failures = 0

    def _guard(self, what: str, fn: Callable[[], Any]) -> None:
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - a tracker must never stop training
            self._failures += 1
            if self._failures == 1:
                log.warning("wandb: %s failed (%s); training goes on, metrics.jsonl holds every value", what,
                            _one_line(exc))

    def log_metrics(self, step: int, values: Mapping[str, float]) -> None:
        self._guard("log", lambda: self.run.log(dict(values), step=step))

    def log_artifact(self, path: Path, folder: str) -> None:
        # run files keep their path below the run folder (previews/step_00000100.png)
        base = path.parent.parent if folder else path.parent
        self._guard("save", lambda: self.run.save(str(path), base_path=str(base), policy="now"))

    def close(self, status: RunStatus) -> None:
        self._guard("finish", lambda: self.run.finish(exit_code=1 if status == "FAILED" else 0))


def open_trackers(cfg: LogConfig | None, run_dir: Path, *, params: Mapping[str, Any], resume_step: int | None,
                  default_name: str) -> list[Tracker]:
    """The configured trackers, each with its run started (or reopened with ``resume_step``);
    ``params`` is the flattened resolved config. A tracker that cannot start raises
    :class:`MedidiffError` after closing the ones already started."""
    if cfg is None:
        return []
    check_trackers(cfg)
    text = param_values(params)
    out: list[Tracker] = []
    try:
        if cfg.mlflow is not None:
            out.append(MLflowTracker(cfg.mlflow, run_dir, params=text, resume_step=resume_step,
                                     default_name=default_name))
        if cfg.wandb is not None:
            out.append(WandbTracker(cfg.wandb, run_dir, params=text, resume_step=resume_step,
                                    default_name=default_name))
    except MedidiffError:
        for t in out:
            t.close("FAILED")
        raise
    return out
