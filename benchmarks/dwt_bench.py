"""Benchmark the 3D Haar DWT/IDWT backends against ptwt, in one run, and check them numerically.

    python benchmarks/dwt_bench.py                                  # CUDA, (1,4,240,240,160) + (4,4,...)
    python benchmarks/dwt_bench.py --device cpu --shape 1 4 32 32 32 --reps 5

For every shape and backend (eager, matmul, compile, triton, ptwt) it times the forward and the
inverse separately (CUDA events, warm-up, median of --reps) and reports GB/s as bytes read plus
bytes written (one level: read N, write N elements, per direction; fwd+inv counts both). It also
checks, in the same run, each backend against ptwt's fp32 bands (max abs diff), the round trip,
and bf16 against the fp32 reference. Prints a markdown table and writes a JSON record to --out.
A memory-bound one-level transform cannot beat one read + one write, so GB/s near the device's
copy bandwidth (torch's own clone, reported as 'copy') is the ceiling.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch

from medidiff.latents.haar import SUBBANDS, fast_dwt3, fast_idwt3, triton_available

Fn = Callable[[torch.Tensor], torch.Tensor]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_fn(fn: Fn, x: torch.Tensor, warmup: int, reps: int) -> float:
    """Median seconds of fn(x) over ``reps`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn(x)
    _sync(x.device)
    times = []
    for _ in range(reps):
        if x.device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn(x)
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        else:
            t0 = time.perf_counter()
            fn(x)
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def ptwt_fns(levels: int) -> tuple[Fn, Fn] | None:
    try:
        import ptwt
    except ImportError:
        return None

    def fwd(x: torch.Tensor) -> torch.Tensor:
        approx, details = ptwt.wavedec3(x, "haar", level=1)
        # stacked in our channel order (B, 8, C, ...) -> (B, 8C, ...), so it is comparable
        bands = [approx] + [details[n.replace("L", "a").replace("H", "d")] for n in SUBBANDS[1:]]
        return torch.stack(bands, 1).flatten(1, 2)

    def inv(z: torch.Tensor) -> torch.Tensor:
        B, C8 = z.shape[:2]
        b = z.view(B, 8, C8 // 8, *z.shape[2:]).unbind(1)
        details = {n.replace("L", "a").replace("H", "d"): b[s] for s, n in enumerate(SUBBANDS) if s}
        return ptwt.waverec3((b[0], details), "haar")

    if levels != 1:
        return None  # ptwt's multi-level is the pyramid, not our packet: not comparable
    return fwd, inv


def ours(backend: str, levels: int) -> tuple[Fn, Fn]:
    return (
        lambda x: fast_dwt3(x, levels, backend=backend),  # type: ignore[arg-type]
        lambda z: fast_idwt3(z, levels, backend=backend),  # type: ignore[arg-type]
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--shape", type=int, nargs=5, action="append", metavar=("B", "C", "D", "H", "W"),
                   help="repeatable; default: 1 4 240 240 160 and 4 4 240 240 160")
    p.add_argument("--levels", type=int, default=1)
    p.add_argument("--backends", nargs="+", default=["eager", "matmul", "compile", "triton", "ptwt"])
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--reps", type=int, default=30)
    p.add_argument("--out", default=None, help="JSON path (default benchmarks/results/dwt_<device>_<date>.json)")
    args = p.parse_args(argv)

    device = torch.device(args.device)
    shapes = args.shape or [[1, 4, 240, 240, 160], [4, 4, 240, 240, 160]]
    dev_name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or "cpu")
    now = dt.datetime.now(dt.timezone.utc)
    record: dict = {
        "benchmark": "dwt3 haar forward/inverse",
        "device": dev_name,
        "device_type": device.type,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "triton_available": triton_available() if device.type == "cuda" else False,
        "date": now.isoformat(timespec="seconds"),
        "command": " ".join([sys.executable, *sys.argv]),
        "levels": args.levels,
        "warmup": args.warmup,
        "reps": args.reps,
        "gb_per_s": "(bytes read + bytes written) / median time / 1e9",
        "results": [],
    }
    rows = []
    for shape in shapes:
        try:
            x = torch.rand(*shape, device=device) * 2 - 1  # (B, C, D, H, W) in [-1, 1]
        except RuntimeError as exc:  # out of memory for the larger default shape
            print(f"skip shape {shape}: {exc}", file=sys.stderr)
            record["results"].append({"shape": shape, "skipped": str(exc)[:200]})
            continue
        nbytes = x.numel() * x.element_size()
        io = 2 * nbytes  # one read + one write per direction
        copy_s = time_fn(lambda t: t.clone(), x, args.warmup, args.reps)
        entry: dict = {"shape": shape, "dtype": "float32", "bytes_per_direction": io,
                       "copy_gbps": io / copy_s / 1e9, "backends": {}}
        ref_fns = ptwt_fns(args.levels)
        ref = ref_fns[0](x) if ref_fns is not None else fast_dwt3(x.double(), args.levels, backend="eager").float()
        ref_name = "ptwt" if ref_fns is not None else "eager float64"
        entry["reference"] = ref_name
        for name in args.backends:
            if name == "ptwt":
                fns = ref_fns
                if fns is None:
                    continue
            elif name == "triton" and not (device.type == "cuda" and triton_available()):
                continue
            else:
                fns = ours(name, args.levels)
            fwd, inv = fns
            res: dict = {}
            try:
                z = fwd(x)
                res["max_abs_diff_vs_ref"] = (z - ref).abs().max().item()
                res["roundtrip_max_abs_err"] = (inv(z) - x).abs().max().item()
                if name != "ptwt":
                    zb = fwd(x.bfloat16())
                    res["bf16_max_abs_diff_vs_fp32"] = (zb.float() - ref).abs().max().item()
                    res["bf16_roundtrip_max_abs_err"] = (inv(zb).float() - x).abs().max().item()
                del z
                t_f = time_fn(fwd, x, args.warmup, args.reps)
                zz = fwd(x)
                t_i = time_fn(inv, zz, args.warmup, args.reps)
                del zz
                res.update(fwd_ms=t_f * 1e3, inv_ms=t_i * 1e3, fwd_gbps=io / t_f / 1e9,
                           inv_gbps=io / t_i / 1e9, fwdinv_gbps=2 * io / (t_f + t_i) / 1e9)
            except Exception as exc:  # a backend that fails is reported, not fatal
                res["error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
            entry["backends"][name] = res
            if device.type == "cuda":
                torch.cuda.empty_cache()
        base = entry["backends"].get("ptwt", {})
        for name, res in entry["backends"].items():
            if "fwd_ms" in res and "fwd_ms" in base:
                res["speedup_vs_ptwt"] = (base["fwd_ms"] + base["inv_ms"]) / (res["fwd_ms"] + res["inv_ms"])
            rows.append((shape, name, res))
        record["results"].append(entry)
        del x

    print(f"\n{dev_name} | torch {torch.__version__} | levels={args.levels} | median of {args.reps}\n")
    print("| shape | backend | fwd ms | inv ms | fwd GB/s | inv GB/s | fwd+inv GB/s | x ptwt | "
          "max|diff| vs ref | roundtrip err | bf16 max|diff| |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for shape, name, r in rows:
        if "error" in r:
            print(f"| {tuple(shape)} | {name} | error: {r['error'][:80]} |||||||||")
            continue
        print(f"| {tuple(shape)} | {name} | {r['fwd_ms']:.3f} | {r['inv_ms']:.3f} | {r['fwd_gbps']:.0f} | "
              f"{r['inv_gbps']:.0f} | {r['fwdinv_gbps']:.0f} | {r.get('speedup_vs_ptwt', float('nan')):.2f} | "
              f"{r['max_abs_diff_vs_ref']:.2e} | {r['roundtrip_max_abs_err']:.2e} | "
              f"{r.get('bf16_max_abs_diff_vs_fp32', float('nan')):.2e} |")
    for e in record["results"]:
        if "copy_gbps" in e:
            print(f"copy (clone) bandwidth for {tuple(e['shape'])}: {e['copy_gbps']:.0f} GB/s")

    out = Path(args.out) if args.out else Path(__file__).parent / "results" / (
        f"dwt_{re.sub(r'[^A-Za-z0-9]+', '-', dev_name).strip('-')}_{now:%Y%m%d-%H%M%S}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
