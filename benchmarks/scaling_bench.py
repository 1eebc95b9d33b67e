"""Scaling over GPU counts and a simulated two-node launch with pre-emption, through ``medidiff train``
(issue 19; built for a 2-GPU host, unchanged on 4: ``--gpus 4 --gpu-counts 1 2 4``).

    python benchmarks/scaling_bench.py --gpus 2 --out benchmarks/results/scaling_h200x2_YYYYMMDD

1. Throughput. For each ZeRO stage in ``--stages`` and each count in ``--gpu-counts``: ``--steps``
   steps at a fixed per-GPU micro-batch, grad_accum 1 (torchrun --standalone; data.cache memory,
   so the loader is not what is measured). Steady-state vol/s
   is all volumes over all time of the log windows after the first ``--skip-windows`` (start-up,
   cuDNN autotuning, cache filling). Scaling efficiency = vol/s(N) / (N x vol/s(1)).
   Memory: ``gpu_mem_peak_gib`` in metrics.jsonl is rank 0's ``max_memory_allocated``; every
   GPU's peak ``memory.used`` (nvidia-smi, polled: CUDA context and the allocator's cache
   included, so higher) is recorded beside it.
   Loss agreement, two comparisons, each named in the JSON: ``equal_global_batch`` (N GPUs x
   micro-batch m against 1 GPU with grad_accum N: the same items per step, other noise draws,
   since noise is seeded per rank and micro-step) and ``equal_per_gpu_batch`` (N GPUs against the
   1-GPU grad_accum-1 run: N times the global batch, so the curves need not agree).
2. Simulated two-node launch: two torchrun groups on this host, each with the torchrun arguments of
   configs/slurm/train.sbatch (``--nnodes 2 --nproc_per_node G/2 --rdzv_id JOB --rdzv_backend
   c10d --rdzv_endpoint 127.0.0.1:PORT``, and ``--resume`` as the sbatch always passes) plus
   ``--node_rank k``, which c10d ignores: it hands out ranks in order of arrival, so which group
   holds rank 0 is recorded from the logs. CUDA_VISIBLE_DEVICES splits the GPUs between them.
   ``--rdzv_conf is_host=1|0`` makes group 0 host the rendezvous store, as the head node does.
   ``launch`` trains ``--two-node-steps`` steps and checkpoints; ``resume`` continues it to twice that.
3. SIGTERM to one group's process group only (as SLURM may signal one node), ``--signal-group``
   (default 1, the group that does not host the rendezvous store); both groups must stop at one
   step with a complete checkpoint that holds every rank's shard. Then a resume on the same count.
   Part ``zero0``: a ZeRO-0 run on the two groups (grad_accum 1) resumed by one process (written
   when ZeRO-0 was the only stage whose checkpoints loaded on another count; ZeRO-1/2/3 now do
   through DeepSpeed's universal checkpoint: ``preemption_bench.py --resume-gpus``). ``--parts`` picks parts (default: all four).
   The unsignalled head's torchrun waits in its exit barrier for the dead agent (300 s): it is
   killed ``--linger`` s after every rank has exited, and the JSON says so.

Everything goes to ``OUT/scaling.json`` (device, versions, date, exact commands, numbers),
``OUT/README.md`` (tables) and one log per run under ``OUT/logs``.

CPU smoke test (gloo; 1+1 processes for the two groups, a tiny net, a few steps):
``--device cpu --smoke``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shlex
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import preemption_bench as pb  # noqa: E402  (the runs' overrides, commands and the stop logic: one place)

REPO = pb.REPO
PARTS = ("throughput", "two_node", "sigterm", "zero0")


# ---- one run's numbers from metrics.jsonl ---------------------------------------------------------


def metrics_rows(run: Path) -> list[dict[str, Any]]:
    """metrics.jsonl's rows; none when the run failed before its first log line (its log says why)."""
    path = run / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def steady_rate(rows: list[dict[str, Any]], skip_windows: int) -> dict[str, Any]:
    """Steady-state vol/s: the volumes of the log windows after the first ``skip_windows`` over their
    time (each window's time is its volumes / its vol/s, so no window's rate is weighted wrong)."""
    windows, prev = [], 0
    for r in rows:
        if "volumes_per_s" in r:
            windows.append((r["step"] - prev, r["volumes_per_s"], r["steps_per_s"]))
            prev = r["step"]
    kept = windows[skip_windows:]
    if not kept:
        return {"vol_per_s": None, "windows": 0, "windows_dropped": len(windows)}
    seconds = sum(n / sps for n, _, sps in kept)
    vols = sum(vps * n / sps for n, vps, sps in kept)
    return {"vol_per_s": vols / seconds, "steps_per_s": sum(n for n, _, _ in kept) / seconds,
            "windows": len(kept), "windows_dropped": len(windows) - len(kept)}


def loss_curve(rows: list[dict[str, Any]]) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


def agreement(a: dict[int, float], b: dict[int, float], tail: int) -> dict[str, Any]:
    """Per-window relative loss difference and the relative difference of the last ``tail`` windows' mean."""
    common = sorted(a.keys() & b.keys())
    if not common:
        return {"steps_compared": 0}
    last = common[-tail:]
    mean_a, mean_b = (sum(c[s] for s in last) / len(last) for c in (a, b))
    return {"steps_compared": len(common), "max_rel_diff": pb.rel_diff(a, b),
            "tail_windows": len(last), "tail_mean_rel_diff": abs(mean_a - mean_b) / max(abs(mean_b), 1e-12)}


class GpuMemoryPoller:
    """Every GPU's peak ``memory.used`` (MiB) while a run lasts, from nvidia-smi every 0.5 s: the
    loop logs only rank 0's allocator peak, and the other ranks' memory is the question."""

    def __init__(self, enabled: bool) -> None:
        self.peak: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True) if enabled else None

    def _poll(self) -> None:
        while not self._stop.is_set():
            try:
                text = subprocess.run(["nvidia-smi", "--query-gpu=index,memory.used", "--format=csv,noheader,nounits"],
                                      capture_output=True, text=True, timeout=10).stdout
            except (OSError, subprocess.TimeoutExpired):
                return
            for line in text.splitlines():
                idx, used = (int(v) for v in line.split(","))
                self.peak[idx] = max(self.peak.get(idx, 0), used)
            self._stop.wait(0.5)

    def __enter__(self) -> GpuMemoryPoller:
        if self._thread is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def gib(self) -> dict[str, float] | None:
        return {str(k): round(v / 1024, 2) for k, v in sorted(self.peak.items())} if self._thread else None


# ---- the simulated two-node launch --------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def two_groups(args: argparse.Namespace, sets: list[str], job: str, port: int, logs: Path, name: str,
               ) -> list[tuple[list[str], Path, dict[str, str] | None]]:
    """Two torchrun commands, one per simulated node, with configs/slurm/train.sbatch's arguments."""
    per = args.gpus // 2
    groups = []
    for k in range(2):
        launcher = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node_rank", str(k),
                    "--nproc_per_node", str(per), "--rdzv_id", job, "--rdzv_backend", "c10d",
                    "--rdzv_endpoint", f"127.0.0.1:{port}",
                    # on real nodes only the head (the endpoint's host) hosts the rendezvous store; on one
                    # host both groups match 127.0.0.1 and the first to bind would win: say which does
                    "--rdzv_conf", f"is_host={int(k == 0)}"]
        env = ({"CUDA_VISIBLE_DEVICES": ",".join(str(g) for g in range(k * per, (k + 1) * per))}
               if args.device == "cuda" else None)
        groups.append((pb.command(args, sets, True, launcher), logs / f"{name}_group{k}.log", env))
    return groups


def run_groups(groups: list[tuple[list[str], Path, dict[str, str] | None]], timeout: float = 600) -> dict[str, Any]:
    """Both groups to the end; each group's exit status and seconds."""
    t0 = time.perf_counter()
    handles = [open(log, "w") for _, log, _ in groups]
    procs = [subprocess.Popen(cmd, cwd=REPO, env=pb._env(env), stdout=fh, stderr=subprocess.STDOUT,
                              start_new_session=True) for (cmd, _, env), fh in zip(groups, handles)]
    out = []
    try:
        for p in procs:
            try:
                p.wait(timeout=max(1.0, timeout - (time.perf_counter() - t0)))
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, 9)
                p.wait()
            out.append({"exit": p.returncode, "seconds": round(time.perf_counter() - t0, 1)})
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, 9)
                p.wait()
        for fh in handles:
            fh.close()
    for g, (cmd, log, env) in zip(out, groups):
        g.update(command=shlex.join(cmd), env=env or {}, log=log.name, holds_rank0=_holds_rank0(log))
    return {"groups": out}


def _holds_rank0(log: Path) -> bool:
    # only rank 0 prints the closing line (trained ... / stopped at step ...)
    text = log.read_text()
    return ("trained " in text and "steps (" in text) or "stopped at step" in text


def checkpoint_facts(run: Path) -> dict[str, Any]:
    """The newest complete checkpoint: its step, world size, and which ranks' shards it holds."""
    from medidiff.training import checkpoint as ckpt

    latest = ckpt.latest_complete(ckpt.checkpoint_root(run))
    if latest is None:
        return {"complete": False}
    state = ckpt.read_state(latest)
    shards = sorted(p.name for p in latest.rglob("*.pt"))
    # zero_pp_rank_R_mp_rank_00_optim_states.pt, bf16_zero_pp_rank_R_... under bf16: one per rank
    ranks = sorted({int(m.group(1)) for n in shards if (m := re.search(r"zero_pp_rank_(\d+)_", n))})
    later = [p.name for p in ckpt.checkpoint_root(run).iterdir() if p.is_dir() and p.name > latest.name]
    return {"complete": True, "tag": latest.name, "step": int(state["step"]), "world_size": int(state["world_size"]),
            "zero_shard_ranks": ranks, "incomplete_later_folders": later}


# ---- main ---------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--gpus", type=int, default=2, help="processes (GPUs) of the two-group launch: G/2 per group")
    ap.add_argument("--gpu-counts", type=int, nargs="+", default=[1, 2], help="GPU counts of the throughput runs")
    ap.add_argument("--stages", nargs="+", default=["zero2", "zero3"], choices=["none", "zero1", "zero2", "zero3"],
                    help="train.deepspeed values (none: the plain-PyTorch engine, DDP)")
    ap.add_argument("--steps", type=int, default=100, help="steps of each throughput run")
    ap.add_argument("--log-every", type=int, default=10, help="log window of the throughput runs")
    ap.add_argument("--skip-windows", type=int, default=3, help="log windows dropped as warm-up")
    ap.add_argument("--two-node-steps", type=int, default=10, help="steps of the two-group launch (resume: twice)")
    ap.add_argument("--two-node-stage", default="zero2", choices=["zero1", "zero2", "zero3"])
    ap.add_argument("--signal-at", type=int, default=5, help="SIGTERM once this many more steps are logged")
    ap.add_argument("--signal-group", type=int, default=1, choices=[0, 1], help="the group that gets SIGTERM")
    ap.add_argument("--linger", type=float, default=15.0,
                    help="seconds a torchrun may outlive every rank after the signal before it is killed")
    ap.add_argument("--parts", nargs="+", default=list(PARTS), choices=list(PARTS),
                    help="throughput: part 1; two_node: launch + resume; sigterm: part 3 (on two_node's run "
                         "folder, or a fresh one); zero0: a ZeRO-0 two-group checkpoint resumed by one process")
    ap.add_argument("--smoke", action="store_true", help="tiny phantoms and net (CPU check of the script)")
    ap.add_argument("--precision", choices=["fp32", "autocast-bf16", "bf16", "fp16"],
                    help="train.precision (default: bf16 on GPUs, fp32 with --smoke)")
    args = ap.parse_args()
    two_group = bool(set(args.parts) - {"throughput"})
    if two_group and (args.gpus < 2 or args.gpus % 2):
        ap.error(f"--gpus {args.gpus}: the two-group launch needs an even count >= 2")
    if (args.out / "runs").is_dir() and any((args.out / "runs").iterdir()):
        # the runs are fresh runs of their names: an earlier call's would be refused (or continued)
        ap.error(f"--out {args.out}: runs/ holds an earlier call's runs; give another --out or delete it")
    if args.smoke:
        args.steps, args.log_every, args.skip_windows = min(args.steps, 4), 1, min(args.skip_windows, 1)
        args.two_node_steps, args.signal_at = min(args.two_node_steps, 2), min(args.signal_at, 2)
    p = dict(pb.SMOKE if args.smoke else pb.GPU)
    if args.precision:
        p["precision"] = args.precision
    out = args.out.absolute()
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(REPO))
    import deepspeed
    import torch

    from medidiff.data.manifest import build_brats_manifest, write_manifest
    from medidiff.data.phantom import write_phantom_dataset

    need = max(max(args.gpu_counts), args.gpus if two_group else 1)
    if args.device == "cuda" and torch.cuda.device_count() < need:
        print(f"scaling_bench: {torch.cuda.device_count()} GPU(s) visible, --gpus {args.gpus} / --gpu-counts "
              f"{args.gpu_counts} need {need}", file=sys.stderr)
        return 2
    if not (out / "manifest.json").is_file():
        write_phantom_dataset(out / "data", p["cases"], shape=p["shape"], seed=0, progress=False)
        write_manifest(build_brats_manifest(out / "data", num_folds=2, seed=0), out / "manifest.json")
    smi = None
    if args.device == "cuda":
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv"],
                             capture_output=True, text=True).stdout.strip()
    record: dict[str, Any] = {
        "issue": 19, "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        # from nvidia-smi: torch.cuda.get_device_name would hold a CUDA context on GPU 0 all along,
        # in the memory figures of every run
        "device": smi.splitlines()[1].split(",")[0].strip() if smi else "cpu", "nvidia_smi": smi,
        "torch": torch.__version__, "deepspeed": deepspeed.__version__, "python": sys.version.split()[0],
        "argv": sys.argv, "settings": {**p, "steps": args.steps, "log_every": args.log_every,
                                       "skip_windows": args.skip_windows, "num_workers": 2,
                                       "data_cache": {"throughput": "memory", "two_node": "none"}},
    }
    save = lambda: (out / "scaling.json").write_text(json.dumps(record, indent=2))  # noqa: E731
    t_all = time.perf_counter()
    if "throughput" in args.parts:
        record["throughput"] = throughput(args, p, out, logs, save, record)
    if two_group:
        record["two_node"] = two_node(args, p, out, logs, save, record)
    record["total_seconds"] = round(time.perf_counter() - t_all, 1)
    save()
    (out / "README.md").write_text(readme(record))
    print(f"[scaling] recorded {out / 'scaling.json'} in {record['total_seconds']} s", flush=True)
    return 0


def _one_run(args: argparse.Namespace, p: dict, out: Path, logs: Path, name: str, stage: str, n: int,
             grad_accum: int) -> dict[str, Any]:
    sets = pb.overrides(args, p, out, name, 0 if stage == "none" else int(stage[-1]), args.steps, grad_accum=grad_accum,
                        log_every=args.log_every)
    # decoded once into memory: the 2 loader workers decoding NIfTI every step would be what scales
    sets = [s for s in sets if not s.startswith(("train.deepspeed=", "data.cache="))]
    sets += [f"train.deepspeed={stage}", "data.cache=memory"]
    env = {"CUDA_VISIBLE_DEVICES": ",".join(str(g) for g in range(n))} if args.device == "cuda" else None
    with GpuMemoryPoller(args.device == "cuda") as mem:
        res = pb.run_to_end(pb.command(args, sets, False, pb.standalone(n)), logs / f"{name}.log", env)
    rows = metrics_rows(out / "runs" / name)
    peaks = [r["gpu_mem_peak_gib"] for r in rows if "gpu_mem_peak_gib" in r]
    res.update(gpus=n, grad_accum=grad_accum, micro_batch_per_gpu=p["micro_batch"],
               global_batch=p["micro_batch"] * grad_accum * n, **steady_rate(rows, args.skip_windows),
               rank0_max_memory_allocated_gib=max(peaks) if peaks else None,
               nvidia_smi_peak_memory_used_gib_per_gpu=mem.gib(), losses=loss_curve(rows))
    print(f"[scaling] {name}: exit {res['exit']}, {res.get('vol_per_s')} vol/s, {res['seconds']} s", flush=True)
    return res


def throughput(args: argparse.Namespace, p: dict, out: Path, logs: Path, save, record: dict) -> dict[str, Any]:
    res: dict[str, Any] = {}
    record["throughput"] = res
    for stage in args.stages:
        runs: dict[str, Any] = {}
        res[stage] = {"runs": runs}
        for n in sorted(set(args.gpu_counts)):
            runs[f"gpus{n}"] = _one_run(args, p, out, logs, f"{stage}_g{n}", stage, n, 1)
            save()
            if n > 1:  # the same global batch on one GPU: grad_accum N
                runs[f"gpus1_accum{n}"] = _one_run(args, p, out, logs, f"{stage}_g1_accum{n}", stage, 1, n)
                save()
        base = runs.get("gpus1", {}).get("vol_per_s")
        eff, agree = {}, {}
        for n in sorted(set(args.gpu_counts) - {1}):
            vps = runs[f"gpus{n}"].get("vol_per_s")
            eff[str(n)] = vps / (n * base) if vps and base else None
            agree[str(n)] = {
                "equal_global_batch": agreement(runs[f"gpus{n}"]["losses"], runs[f"gpus1_accum{n}"]["losses"], 4),
                "equal_per_gpu_batch": agreement(runs[f"gpus{n}"]["losses"], runs.get("gpus1", {}).get("losses", {}), 4),
            }
        res[stage]["scaling_efficiency"] = eff
        res[stage]["loss_agreement"] = agree
        save()
    return res


def two_node(args: argparse.Namespace, p: dict, out: Path, logs: Path, save, record: dict) -> dict[str, Any]:
    stage = int(args.two_node_stage[-1])
    res: dict[str, Any] = {"stage": args.two_node_stage, "processes": args.gpus, "per_group": args.gpus // 2}
    record["two_node"] = res
    name = "two_node"
    run = out / "runs" / name
    n1, n2 = args.two_node_steps, 2 * args.two_node_steps

    def launch(label: str, max_steps: int, job: str, run_name: str = name, st: int = stage) -> dict[str, Any]:
        # grad_accum 2 as preemption_bench, except ZeRO-0: with bf16 weights it would accumulate in
        # bf16, which medidiff refuses (DeepSpeed #2768)
        sets = pb.overrides(args, p, out, run_name, st, max_steps, grad_accum=1 if st == 0 else 2)
        r = run_groups(two_groups(args, sets, job, free_port(), logs, label))
        r["checkpoint"] = checkpoint_facts(out / "runs" / run_name)
        print(f"[scaling] {label}: {[g['exit'] for g in r['groups']]}, checkpoint {r['checkpoint']}", flush=True)
        return r

    if "two_node" in args.parts:
        # the sbatch's job id is the rendezvous id; a requeued job keeps it, so the resume does too
        res["launch"] = launch("launch", n1, "scaling-launch")
        save()
        res["resume"] = launch("resume", n2, "scaling-launch")
        curve = loss_curve(metrics_rows(run))
        res["resume"]["first_step_after_resume"] = min((s for s in curve if s > n1), default=None)
        res["resume"]["continued_at_checkpoint_step"] = (res["launch"]["checkpoint"].get("step") == n1
                                                         and res["resume"]["first_step_after_resume"] == n1 + 1)
        save()
    if "sigterm" in args.parts:
        sigterm(args, p, out, logs, save, res, launch)
    if "zero0" in args.parts:  # resume on another process count (ZeRO-1/2/3: preemption_bench --resume-gpus)
        zero0(args, p, out, logs, res, launch)
        save()
    return res


def sigterm(args: argparse.Namespace, p: dict, out: Path, logs: Path, save, res: dict, launch) -> None:
    stage, name = int(args.two_node_stage[-1]), "two_node"
    run = out / "runs" / name

    # SIGTERM to one group only; a far max_steps so it cannot finish first
    sets = pb.overrides(args, p, out, name, stage, 10**6)
    groups = two_groups(args, sets, "scaling-sigterm", free_port(), logs, "sigterm")
    stop = pb.stop_one_group(groups, run, args.signal_at, target=args.signal_group, linger=args.linger)
    stop["checkpoint"] = checkpoint_facts(run)
    for g, (_, log, env) in zip(stop["groups"], groups):
        g.update(env=env or {}, log=log.name, holds_rank0=_holds_rank0(log))
    facts = stop["checkpoint"]
    stop["every_rank_stopped_at_the_checkpoint"] = bool(
        facts.get("complete") and facts.get("step") == stop.get("checkpoint_step")
        and facts.get("world_size") == args.gpus and not facts.get("incomplete_later_folders")
        and (stage == 0 or facts.get("zero_shard_ranks") == list(range(args.gpus)))
        and all(g["seconds_to_ranks_exit"] is not None for g in stop["groups"]))
    res["sigterm"] = stop
    print(f"[scaling] sigterm: {json.dumps({k: v for k, v in stop.items() if k != 'groups'})}", flush=True)
    save()
    at = stop.get("checkpoint_step") or 0
    res["resume_after_sigterm"] = launch("resume_after_sigterm", at + args.two_node_steps, "scaling-sigterm")
    curve = loss_curve(metrics_rows(run))
    res["resume_after_sigterm"]["first_step_after_resume"] = min((s for s in curve if s > at), default=None)
    res["resume_after_sigterm"]["continued_at_checkpoint_step"] = (
        res["resume_after_sigterm"]["first_step_after_resume"] == at + 1
        and res["resume_after_sigterm"]["checkpoint"].get("step") == at + args.two_node_steps)
    res["loss_curve"] = curve
    save()


def zero0(args: argparse.Namespace, p: dict, out: Path, logs: Path, res: dict, launch) -> None:
    n1, n2 = args.two_node_steps, 2 * args.two_node_steps
    z0 = launch("zero0_two_groups", n1, "scaling-zero0", "zero0", 0)
    sets = pb.overrides(args, p, out, "zero0", 0, n2, grad_accum=1)
    env = {"CUDA_VISIBLE_DEVICES": "0"} if args.device == "cuda" else None
    one = pb.run_to_end(pb.command(args, sets, True, pb.standalone(1)), logs / "zero0_resume_on_1.log", env)
    one["checkpoint"] = checkpoint_facts(out / "runs" / "zero0")
    text = (logs / "zero0_resume_on_1.log").read_text()
    one["says_resuming_on_another_count"] = f"written by {args.gpus}" in text
    curve0 = loss_curve(metrics_rows(out / "runs" / "zero0"))
    one["continued_at_checkpoint_step"] = (min((s for s in curve0 if s > n1), default=None) == n1 + 1
                                           and one["checkpoint"].get("step") == n2
                                           and one["checkpoint"].get("world_size") == 1)
    res["zero0_other_count"] = {"two_groups": z0, "resume_on_1": one, "loss_curve": curve0}


def _fmt(v: Any, nd: int = 2) -> str:
    return "-" if v is None else f"{v:.{nd}f}" if isinstance(v, float) else str(v)


def readme(r: dict[str, Any]) -> str:
    lines = [f"# Scaling and simulated two-node pre-emption (issue 19): {r['device']}, {r['date']}", "",
             f"torch {r['torch']}, DeepSpeed {r['deepspeed']}; settings {json.dumps(r['settings'])}.",
             f"Command: `{shlex.join(r['argv'])}`; all numbers and exact commands in scaling.json, logs in logs/.", ""]
    if "throughput" in r:
        lines += ["## Throughput at a fixed per-GPU micro-batch", "",
                  "| stage | GPUs | grad_accum | global batch | vol/s (steady) | efficiency | rank-0 peak alloc GiB | "
                  "nvidia-smi peak used GiB per GPU |", "|---|---|---|---|---|---|---|---|"]
        for stage, s in r["throughput"].items():
            for run in s["runs"].values():
                eff = s["scaling_efficiency"].get(str(run["gpus"])) if run["grad_accum"] == 1 else None
                lines.append(f"| {stage} | {run['gpus']} | {run['grad_accum']} | {run['global_batch']} | "
                             f"{_fmt(run.get('vol_per_s'))} | {_fmt(eff)} | {_fmt(run['rank0_max_memory_allocated_gib'])} "
                             f"| {run['nvidia_smi_peak_memory_used_gib_per_gpu'] or '-'} |")
        lines += ["", "Efficiency = vol/s(N) / (N x vol/s(1)). Loss agreement (relative difference of the mean of the "
                  "last 4 log windows; max over windows in brackets): equal global batch = N GPUs vs 1 GPU with "
                  "grad_accum N (same items per step, other noise draws); equal per-GPU batch = N GPUs vs 1 GPU "
                  "grad_accum 1 (N x the global batch).", ""]
        for stage, s in r["throughput"].items():
            for n, a in s["loss_agreement"].items():
                g, q = a["equal_global_batch"], a["equal_per_gpu_batch"]
                lines.append(f"- {stage}, {n} GPUs: equal global batch {_fmt(g.get('tail_mean_rel_diff'), 3)} "
                             f"({_fmt(g.get('max_rel_diff'), 3)}); equal per-GPU batch "
                             f"{_fmt(q.get('tail_mean_rel_diff'), 3)} ({_fmt(q.get('max_rel_diff'), 3)})")
        lines.append("")
    if "two_node" in r:
        t = r["two_node"]
        lines += [f"## Two torchrun groups of {t['per_group']} (c10d rendezvous, {t['stage']})", "",
                  "| run | group exits | seconds | checkpoint step | continued at checkpoint |", "|---|---|---|---|---|"]
        for key in ("launch", "resume", "resume_after_sigterm"):
            if key in t:
                x = t[key]
                lines.append(f"| {key} | {[g['exit'] for g in x['groups']]} | {[g['seconds'] for g in x['groups']]} | "
                             f"{x['checkpoint'].get('step')} | {x.get('continued_at_checkpoint_step', '-')} |")
        if "sigterm" in t:
            s = t["sigterm"]
            lines += ["", f"SIGTERM to group {s['signalled_group']} after {s['signal_after_logged_steps']} logged steps: "
                      f"checkpoint step {s.get('checkpoint_step')}, complete after "
                      f"{_fmt(s.get('seconds_to_complete_checkpoint'))} s; group exits "
                      f"{[g['exit'] for g in s['groups']]}; their ranks gone after "
                      f"{[g['seconds_to_ranks_exit'] for g in s['groups']]} s, torchrun gone after "
                      f"{[g['seconds_to_exit'] for g in s['groups']]} s (killed after lingering: "
                      f"{[g['killed_after_timeout'] for g in s['groups']]}); group holding rank 0: "
                      f"{[g['holds_rank0'] for g in s['groups']].index(True) if any(g['holds_rank0'] for g in s['groups']) else '?'}"
                      f"; shards of ranks "
                      f"{s['checkpoint'].get('zero_shard_ranks')}; every rank stopped at the checkpoint: "
                      f"{s['every_rank_stopped_at_the_checkpoint']}."]
        if "zero0_other_count" in t:
            o = t["zero0_other_count"]["resume_on_1"]
            lines += ["", f"ZeRO-0 checkpoint of {t['processes']} processes resumed by 1: exit {o['exit']}, continued at "
                      f"the checkpoint step: {o['continued_at_checkpoint_step']}."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
