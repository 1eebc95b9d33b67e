"""Configuration of the training loop and the DeepSpeed engine (the ``train:`` section)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

from medidiff.training.ema import EMAConfig


@dataclass
class TrainConfig:
    """One loop for every stage (VAE, diffusion, super-resolution).

    ``micro_batch`` is per GPU (per process); the global batch is
    ``micro_batch * grad_accum * world_size``. ``deepspeed`` is ``none`` (no DeepSpeed: the plain
    engine), or names a built-in config (zero0..zero3, zero2_offload) or a JSON file (examples under configs/deepspeed/) whose ZeRO stage and offload settings are used; batch, clipping,
    precision and optimizer fields in it that say "auto" are filled from this section.
    """

    max_steps: int = 1000  # optimizer steps
    # wall-clock budget of one invocation in minutes (0: none). When it runs out the loop writes a
    # checkpoint and returns normally (FitResult.time_limited), so a fixed-compute run or a job
    # that must end before a scheduler limit still exports; pair it with lr_schedule: constant (the
    # other schedules decay toward max_steps, which such a run may not reach).
    max_minutes: float = 0.0
    micro_batch: int = 1
    grad_accum: int = 1
    lr: float = 1.0e-4
    min_lr_ratio: float = 0.0  # cosine and wsd decay to lr * min_lr_ratio
    warmup_steps: int = 100
    # after the warm-up: cosine over the remaining steps; constant; or wsd (warm-up, stable, decay: the rate held
    # at lr, then a linear decay over the last decay_fraction of max_steps; arXiv:2405.18392). All but constant
    # read max_steps: a run that a clock (max_minutes) stops first never finishes its decay.
    lr_schedule: Literal["cosine", "constant", "wsd"] = "cosine"
    decay_fraction: float = 0.2  # wsd: the share of max_steps spent decaying (two steps at least; after the warm-up)
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float = 1.0  # 0 disables clipping
    # fp32: everything fp32. autocast-bf16: fp32 weights, bf16 compute (EMA is exact).
    # bf16: DeepSpeed bf16 weights with fp32 master copies in the optimizer (fastest on GPU).
    # fp16: for GPUs without bf16 (V100, T4): DeepSpeed fp16 weights, fp32 masters and dynamic
    # loss scaling (steps whose gradients overflow are skipped and the scale lowered).
    # The EMA always averages the fp32 masters.
    precision: Literal["fp32", "autocast-bf16", "bf16", "fp16"] = "autocast-bf16"
    # built-in zero0..zero3, zero2_offload, a .json path, or none: plain PyTorch (fused AdamW, DDP
    # over ranks, no DeepSpeed: medidiff/training/torch_engine.py). The shipped diffusion configs
    # use none: 8.0 vs zero1's 6.0 vol/s on one H200 (benchmarks/results/loop_h200_quiet_20261130).
    # zero1 stays the default for configs that name no engine (2.4x zero2, loop_h200_20261130).
    deepspeed: str = "zero1"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    compile: bool = False  # torch.compile the network (GPU)
    # torch.compile mode, used when compile is true (so compile: false alone turns a shipped GPU recipe's
    # compiling off, e.g. on a CPU); 'reduce-overhead' adds CUDA graphs (UNet3D with net.norm pixel: 189 vs 138
    # vol/s in benchmarks/unet_bench.py on an H200; not yet timed inside DeepSpeed's engine)
    compile_mode: Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"] = "default"
    # every training item loaded once onto the device before the first step; batches are then
    # joined there, with no loader work a step (medidiff/training/device_data.py). Only for a
    # pipeline whose one random step after its cache is at most the left-right flip (data.flip_prob)
    # or the SR stage's window: either is replayed on the device with the loader's own draws. The set
    # must fit in half of the device's free memory (the anatomy recipe's 285 cases: 3.3 GB; the SR
    # stage holds whole cases: ~175 MB each at 240x240x160 with 4 modalities). auto: held when it can
    # be (a CUDA device, a set that fits, no other random step), else the loader, with a warning saying why
    data_on_device: bool | Literal["auto"] = False
    ema: EMAConfig = field(default_factory=EMAConfig)
    ema_every: int = 1  # EMA update period in optimizer steps (ZeRO-3 gathers every master for it)
    ckpt_every: int = 500  # optimizer steps between checkpoints (0: only at the end)
    keep_last: int = 3  # checkpoints kept on disk
    log_every: int = 10
    preview_every: int = 0  # steps between PNG sample previews (0: off)
    val_every: int = 0  # steps between validation losses (0: off)

    def __post_init__(self) -> None:
        if not (isinstance(self.data_on_device, bool) or self.data_on_device == "auto"):  # code, not YAML, can pass 1
            raise ValueError(f"data_on_device must be true, false or auto, got {self.data_on_device!r}")
        for name in ("max_steps", "micro_batch", "grad_accum", "ema_every", "log_every", "keep_last"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("warmup_steps", "ckpt_every", "preview_every", "val_every"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.max_minutes < 0:
            raise ValueError(f"max_minutes must be >= 0 (0: no limit), got {self.max_minutes}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if not 0.0 < self.decay_fraction <= 1.0:
            raise ValueError(f"decay_fraction must be in (0, 1], got {self.decay_fraction}")
        if self.grad_clip < 0:
            raise ValueError(f"grad_clip must be >= 0, got {self.grad_clip}")


@dataclass
class MLflowConfig:
    """An MLflow run beside metrics.jsonl (``log.mlflow``): scalars, the resolved config as
    parameters, previews and resolved_config.yaml as artifacts (:mod:`medidiff.training.tracking`).

    ``tracking_uri`` is a local store (``file:///abs/path/mlruns`` or a folder path) or a server
    (``http(s)://host:port``, ``databricks``). Credentials go in MLflow's own environment variables
    (MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD or MLFLOW_TRACKING_TOKEN), never in the URI:
    the config is saved in the run folder, in every checkpoint and in exported models.
    """

    tracking_uri: str
    experiment: str = "medidiff"
    run_name: str = ""  # "" -> the experiment config's name

    def __post_init__(self) -> None:
        if not self.tracking_uri.strip():
            raise ValueError("tracking_uri is empty: give file:///abs/path/mlruns or http(s)://host:port")
        parts = urlsplit(self.tracking_uri)
        if parts.username or parts.password:
            raise ValueError("tracking_uri holds credentials, which would be saved with the config in the run folder, "
                             "its checkpoints and exported models: remove them and set MLFLOW_TRACKING_USERNAME / "
                             "MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN) instead")
        if not self.experiment.strip():
            raise ValueError("experiment is empty: name the MLflow experiment the runs go to")


@dataclass
class WandbConfig:
    """A Weights & Biases run (``log.wandb``); offline by default: files under RUN/wandb, nothing
    sent until ``wandb sync RUN/wandb/offline-run-*``. Needs the ``wandb`` package."""

    project: str
    mode: Literal["offline", "online"] = "offline"
    entity: str = ""  # "" -> W&B's default entity
    run_name: str = ""  # "" -> the experiment config's name

    def __post_init__(self) -> None:
        if not self.project.strip():
            raise ValueError("project is empty: name the W&B project")


@dataclass
class LogConfig:
    """Experiment trackers beside RUN/metrics.jsonl and TensorBoard (the ``log:`` section). Each is
    off unless given; nothing is imported or contacted otherwise. Only rank 0 logs."""

    mlflow: MLflowConfig | None = None
    wandb: WandbConfig | None = None
