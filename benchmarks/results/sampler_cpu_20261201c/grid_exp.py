"""Throwaway: the shipped model's sampling grid with a finer end (GRID_POWER, GRID_SHIFT env)."""
import os, sys, runpy, torch
sys.path.insert(0, "/work/main/benchmarks")
from medidiff.objectives import flow
from medidiff.objectives.schedules import shift_time
P = float(os.environ.get("GRID_POWER", "1")); F = os.environ.get("GRID_SHIFT")
orig = flow.FlowMatchingObjective.timesteps
def timesteps(self, num_steps, *, shape=None, spacing=None):
    t = torch.linspace(1.0, 0.0, num_steps + 1, dtype=torch.float64) ** P
    s = float(F) if F else self.shift(shape)
    g = shift_time(t, s)
    print("grid", [round(x, 4) for x in g.tolist()[-4:]], "shift", s, flush=True)
    return g
flow.FlowMatchingObjective.timesteps = timesteps
sys.argv = ["sampler_ablation.py"] + sys.argv[1:]
runpy.run_path("/work/main/benchmarks/sampler_ablation.py", run_name="__main__")
