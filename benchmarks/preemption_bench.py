"""Pre-emption, resume and ZeRO-3 accumulation on several GPUs, through ``medidiff train`` (issue 17).

    python benchmarks/preemption_bench.py --gpus 2 --out benchmarks/results/preemption_h200x2_YYYYMMDD

For each ZeRO stage (default 2 and 3), with ``grad_accum 2`` and 2 loader workers per rank:

1. ``full``: an uninterrupted run of ``--steps`` steps (the reference loss curve);
2. ``stopped``: the same run started in its own session; once it has logged ``--signal-at``
   steps, SIGTERM goes to the whole process group (torchrun, ranks, loader workers), as SLURM
   and torchrun do. Recorded: seconds from the signal to a complete checkpoint (COMPLETE
   marker) and to the exit, the exit status, the checkpoint's step;
3. ``resumed``: ``--resume`` of the stopped run up to ``--steps``; its losses after the
   checkpoint are compared with ``full``'s at the same steps.
4. with ``--resume-gpus N`` (N other than ``--gpus``): a copy of the stopped run is resumed on N
   processes (ZeRO shards re-cut through DeepSpeed's universal checkpoint). The global batch
   changes with N, so its losses are not expected to equal ``full``'s: recorded are its exit,
   final step, the conversion's seconds and the mean relative loss difference to ``full``.

Then ZeRO-3 against ZeRO-2 (same seeds and data): per-step relative loss difference and the
final EMA weights. Everything goes to ``OUT/preemption.json`` (device, versions, commands,
numbers) and the per-run folders under OUT. The LR schedule is constant after warm-up, so the
stopped run (given a far ``max_steps`` so it cannot finish first) and the resumed one (given
``--steps``) follow the same schedule as ``full``.

CPU smoke test (gloo, 2 processes, a tiny net): ``--device cpu --gpus 2 --smoke``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

GPU = {"cases": 8, "shape": (64, 64, 48), "roi": [64, 64, 64], "channels": [64, 128, 256], "micro_batch": 2,
       "precision": "bf16"}
SMOKE = {"cases": 4, "shape": (32, 32, 24), "roi": [16, 16, 16], "channels": [8, 16], "micro_batch": 1,
         "precision": "fp32"}


def overrides(args: argparse.Namespace, p: dict, out: Path, name: str, stage: int, max_steps: int, *,
              grad_accum: int = 2, log_every: int = 1) -> list[str]:
    """``--set`` overrides of configs/wavelet_flow.yaml for one run (scaling_bench.py uses them too)."""
    return [
        f"name={name}", f"output_dir={out / 'runs'}", f"data.manifest={out / 'manifest.json'}",
        f"data.root={out / 'data'}", "data.fold=null", f"data.roi={p['roi']}",
        # decoded by the 2 loader workers every epoch: data.cache memory builds its cache with a
        # thread pool of num_workers threads, which once gave a 1-channel image (see the report)
        "data.cache=none",
        "data.num_workers=2", "data.label_mode=regions", f"net.channels={p['channels']}", "net.num_res_blocks=1",
        f"net.norm_groups={min(8, p['channels'][0])}", "latent.fit_stats=false", "objective.type=flow",
        f"train.device={args.device}", f"train.precision={p['precision']}", f"train.deepspeed=zero{stage}",
        f"train.micro_batch={p['micro_batch']}", f"train.grad_accum={grad_accum}", "train.lr_schedule=constant",
        "train.warmup_steps=5", "train.lr=1.0e-4", f"train.log_every={log_every}", "train.ckpt_every=0",
        "train.val_every=0",
        f"train.max_steps={max_steps}",
    ]


def standalone(nproc: int) -> list[str]:
    """torchrun for one host alone (its own rendezvous on a free port)."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]


def command(args: argparse.Namespace, sets: list[str], resume: bool, launcher: list[str] | None = None) -> list[str]:
    """``medidiff train`` under ``launcher`` (default: torchrun --standalone with ``args.gpus`` processes)."""
    cmd = [*(launcher or standalone(args.gpus)),
           "-m", "medidiff", "train", "-c", str(REPO / "configs" / "wavelet_flow.yaml"), "--no-progress"]
    cmd += ["--resume"] if resume else []
    return cmd + [a for s in sets for a in ("--set", s)]


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    drop = {"RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "LOCAL_WORLD_SIZE"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["PYTHONPATH"] = f"{REPO}{os.pathsep}{env.get('PYTHONPATH', '')}"
    env.setdefault("OMP_NUM_THREADS", "4")
    return {**env, **(extra or {})}


def losses(run: Path) -> dict[int, float]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


def run_to_end(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> dict:
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        proc = subprocess.run(cmd, cwd=REPO, env=_env(env), stdout=fh, stderr=subprocess.STDOUT)
    return {"command": shlex.join(cmd), "exit": proc.returncode, "seconds": round(time.perf_counter() - t0, 1)}


def has_children(pid: int) -> bool:
    """Whether a process (torchrun's agent) still has child processes (its ranks); Linux /proc."""
    try:
        return bool(Path(f"/proc/{pid}/task/{pid}/children").read_text().split())
    except OSError:
        return False


def run_and_stop(cmd: list[str], run: Path, signal_at: int, log: Path) -> dict:
    """Start ``cmd`` in its own session; after ``signal_at`` logged steps SIGTERM its process group."""
    res = stop_one_group([(cmd, log, None)], run, signal_at)
    group = res.pop("groups")[0]
    return {"command": group["command"], "exit": group["exit"], **res,
            "seconds_to_exit": group["seconds_to_exit"], "worker_killed_by_signal": group["worker_killed_by_signal"],
            # torchrun itself exits 1 (SignalException) after its ranks have ended: their own word counts
            "ranks_stopped_at_checkpoint": group["rank0_says_stopped_at_checkpoint"]}


def stop_one_group(groups: list[tuple[list[str], Path, dict[str, str] | None]], run: Path, signal_at: int, *,
                   target: int = 0, linger: float = 30.0, timeout: float = 300.0) -> dict:
    """Start each ``(command, log, extra env)`` in its own session (one torchrun each, as one per node);
    once ``run`` has logged ``signal_at`` more steps, SIGTERM the process group of ``groups[target]`` only.

    Returns the checkpoint's step, seconds from the signal to a complete checkpoint, and per group
    the exit status, seconds from the signal to the exit of its ranks (the launcher's children)
    and of the launcher. A launcher still running ``linger`` s after every group's ranks have
    ended (SLURM's default KillWait is 30 s), or ``timeout`` s after the signal, is killed
    (SIGKILL) and says so: an unsignalled torchrun waits in its exit barrier (300 s) for an agent
    that died of the signal.
    """
    from medidiff.training import checkpoint as ckpt

    handles = [open(log, "w") for _, log, _ in groups]
    procs = [subprocess.Popen(cmd, cwd=REPO, env=_env(env), stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
             for (cmd, _, env), fh in zip(groups, handles)]
    exits: list[float | None] = [None] * len(procs)
    ranks_gone: list[float | None] = [None] * len(procs)
    timed_out = [False] * len(procs)
    t_complete = before = None
    error = None
    try:
        metrics = run / "metrics.jsonl"
        start_lines = len(metrics.read_text().splitlines()) if metrics.is_file() else 0  # a resumed run's rows
        while not (metrics.is_file() and len(metrics.read_text().splitlines()) >= start_lines + signal_at):
            if any(p.poll() is not None for p in procs):
                error = "a group ended before the signal"
                break
            time.sleep(0.05)
        if error is None:
            before = ckpt.latest_complete(ckpt.checkpoint_root(run))
            os.killpg(procs[target].pid, signal.SIGTERM)
            t_sig = time.perf_counter()
            while any(e is None for e in exits):
                now = time.perf_counter() - t_sig
                for i, p in enumerate(procs):
                    if ranks_gone[i] is None and not has_children(p.pid):
                        ranks_gone[i] = now
                all_gone = max(ranks_gone) if all(g is not None for g in ranks_gone) else None  # type: ignore[type-var]
                for i, p in enumerate(procs):
                    if exits[i] is None and p.poll() is not None:
                        exits[i] = now
                    elif exits[i] is None and (now > timeout or (all_gone is not None and now > all_gone + linger)):
                        os.killpg(p.pid, signal.SIGKILL)
                        p.wait()
                        exits[i], timed_out[i] = now, True
                latest = ckpt.latest_complete(ckpt.checkpoint_root(run))
                if t_complete is None and latest is not None and latest != before:
                    t_complete = now
                time.sleep(0.05)
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        for fh in handles:
            fh.close()
    latest = ckpt.latest_complete(ckpt.checkpoint_root(run))
    if error is None and t_complete is None and latest is not None and latest != before:
        t_complete = max(e for e in exits if e is not None)  # written between the last two polls
    out: dict = {"signal_after_logged_steps": signal_at, "signalled_group": target,
                 "checkpoint_step": ckpt.read_state(latest)["step"] if latest is not None and latest != before else None,
                 "seconds_to_complete_checkpoint": None if t_complete is None else round(t_complete, 2), "groups": []}
    if error:
        out["error"] = error
    for (cmd, log, _), p, e, gone, killed in zip(groups, procs, exits, ranks_gone, timed_out):
        text = log.read_text()
        out["groups"].append({
            "command": shlex.join(cmd), "exit": p.returncode, "seconds_to_exit": None if e is None else round(e, 2),
            "seconds_to_ranks_exit": None if gone is None else round(gone, 2), "killed_after_timeout": killed, "worker_killed_by_signal": "killed by signal" in text,
            # rank 0 says this (in whichever group holds it); torchrun's own exit status is not the ranks'
            "rank0_says_stopped_at_checkpoint": "stop requested by signal: checkpoint written" in text})
    return out


def rel_diff(a: dict[int, float], b: dict[int, float]) -> float | None:
    common = sorted(a.keys() & b.keys())
    if not common:
        return None
    return max(abs(a[s] - b[s]) / max(abs(b[s]), 1e-12) for s in common)


def resume_on(args: argparse.Namespace, p: dict, out: Path, name: str, stage: int, at: int | None) -> dict:
    """``--resume`` of the copied run ``name`` on ``args.resume_gpus`` processes, against ``full``."""
    log = out / f"{name}_resumed.log"
    res = run_to_end(command(args, overrides(args, p, out, name, stage, args.steps), True,
                             launcher=standalone(args.resume_gpus)), log)
    text = log.read_text(errors="replace")
    took = re.search(r"universal conversion took ([0-9.]+) s", text)
    cont, ref = losses(out / "runs" / name), losses(out / "runs" / f"z{stage}_full")
    after = {s: v for s, v in cont.items() if s > (at or 0) and s in ref}
    res.update(processes=args.resume_gpus, converted="converting its ZeRO shards" in text,
               conversion_seconds=float(took.group(1)) if took else None, final_step=max(cont) if cont else None,
               mean_rel_loss_diff_to_full=(sum(abs(v - ref[s]) / max(abs(ref[s]), 1e-12) for s, v in after.items())
                                           / len(after)) if after else None,
               steps_compared=len(after))
    print(f"[preemption] ZeRO-{stage} resumed on {args.resume_gpus}: {res}", flush=True)
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--gpus", type=int, default=2, help="processes (GPUs) per run")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--stages", type=int, nargs="+", default=[2, 3])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--signal-at", type=int, default=25, help="SIGTERM once this many steps are logged")
    ap.add_argument("--resume-gpus", type=int, help="also resume a copy of each stopped run on this many processes")
    ap.add_argument("--smoke", action="store_true", help="tiny phantoms and net (CPU check of the script)")
    ap.add_argument("--precision", choices=["fp32", "autocast-bf16", "bf16", "fp16"],
                    help="train.precision (default: bf16 on GPUs, fp32 with --smoke); fp16 checks loss scaling")
    args = ap.parse_args()
    if args.smoke:
        args.steps, args.signal_at = min(args.steps, 8), min(args.signal_at, 3)
    p = dict(SMOKE if args.smoke else GPU)
    if args.precision:
        p["precision"] = args.precision
    out = args.out.absolute()
    out.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(REPO))
    import deepspeed
    import torch

    from medidiff.data.manifest import build_brats_manifest, write_manifest
    from medidiff.data.phantom import write_phantom_dataset
    from medidiff.training import checkpoint as ckpt

    if not (out / "manifest.json").is_file():
        write_phantom_dataset(out / "data", p["cases"], shape=p["shape"], seed=0, progress=False)
        write_manifest(build_brats_manifest(out / "data", num_folds=2, seed=0), out / "manifest.json")
    device = torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu"
    record: dict = {"device": device, "gpus": args.gpus, "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                    "torch": torch.__version__, "deepspeed": deepspeed.__version__, "settings": {**p, "steps": args.steps,
                    "grad_accum": 2, "num_workers": 2}, "argv": sys.argv, "stages": {}}
    save = lambda: (out / "preemption.json").write_text(json.dumps(record, indent=2))  # noqa: E731
    for stage in args.stages:
        res: dict = {}
        full, stopped = f"z{stage}_full", f"z{stage}_stopped"
        res["full"] = run_to_end(command(args, overrides(args, p, out, full, stage, args.steps), False),
                                 out / f"{full}.log")
        res["stopped"] = run_and_stop(command(args, overrides(args, p, out, stopped, stage, 10**6), False),
                                      out / "runs" / stopped, args.signal_at, out / f"{stopped}.log")
        other = f"z{stage}_stopped_on{args.resume_gpus}"
        if args.resume_gpus and args.resume_gpus != args.gpus:  # the stopped run as it is now, before its resume
            shutil.copytree(out / "runs" / stopped, out / "runs" / other, dirs_exist_ok=True)
        res["resumed"] = run_to_end(command(args, overrides(args, p, out, stopped, stage, args.steps), True),
                                    out / f"{stopped}_resumed.log")
        if args.resume_gpus and args.resume_gpus != args.gpus:
            res["resumed_on_other_count"] = resume_on(args, p, out, other, stage, res["stopped"].get("checkpoint_step"))
        ref, cont = losses(out / "runs" / full), losses(out / "runs" / stopped)
        at = res["stopped"].get("checkpoint_step") or 0
        after = {s: v for s, v in cont.items() if s > at}
        res["resumed_vs_full_max_rel_loss_diff"] = rel_diff(after, ref)
        res["resumed_steps_compared"] = len(after.keys() & ref.keys())
        res["resumed_final_step"] = max(cont) if cont else None
        res["full_losses"] = [ref[s] for s in sorted(ref)]
        res["stopped_then_resumed_losses"] = [cont[s] for s in sorted(cont)]
        record["stages"][f"zero{stage}"] = res
        save()
        print(f"[preemption] ZeRO-{stage}: stop {res['stopped']}, resumed vs full "
              f"{res['resumed_vs_full_max_rel_loss_diff']}", flush=True)
    if {2, 3} <= set(args.stages):
        l2, l3 = losses(out / "runs" / "z2_full"), losses(out / "runs" / "z3_full")
        e2 = ckpt.load_tensors(ckpt.latest_complete(ckpt.checkpoint_root(out / "runs" / "z2_full")) / "ema.safetensors")
        e3 = ckpt.load_tensors(ckpt.latest_complete(ckpt.checkpoint_root(out / "runs" / "z3_full")) / "ema.safetensors")
        num = sum(float((e3[k] - e2[k]).norm() ** 2) for k in e2) ** 0.5
        den = sum(float(e2[k].norm() ** 2) for k in e2) ** 0.5
        record["zero3_vs_zero2"] = {"max_rel_loss_diff": rel_diff(l3, l2), "ema_rel_l2_diff": num / max(den, 1e-12),
                                    "steps": len(l2.keys() & l3.keys())}
        save()
        print(f"[preemption] ZeRO-3 vs ZeRO-2: {record['zero3_vs_zero2']}", flush=True)
    print(f"[preemption] recorded {out / 'preemption.json'}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
