"""Throwaway: does clip_x0 (image-space clamp of every x0 estimate) cause the outside haze? Same model,
same seeds, clip on/off; the realism background check (fraction of outside voxels non-zero, RMS)."""
import json, shutil, subprocess, sys
from pathlib import Path
sys.path.insert(0, "/work/main/benchmarks")
from quality_common import realism_checks_of

OUT = Path("/work/s17/haze"); SRC = Path("/work/main/medidiff/pretrained/anatomy_2mm")
N = int(sys.argv[1]) if len(sys.argv) > 1 else 4
folders = {}
for name, clip in (("clip", True), ("noclip", False)):
    m = OUT / f"model_{name}"
    if not m.exists():
        shutil.copytree(SRC, m)
        c = json.loads((m / "config.json").read_text())
        def walk(d):
            if isinstance(d, dict):
                if "clip_x0" in d: d["clip_x0"] = clip
                for v in d.values(): walk(v)
        walk(c); (m / "config.json").write_text(json.dumps(c, indent=1))
    g = OUT / f"gen_{name}"
    if not g.exists():
        subprocess.run(["medidiff", "generate", "--model", str(m), "--num", str(N), "--seed", "0", "--device", "cpu",
                        "--sampler", "heun", "--steps", "30", "--out", str(g), "--no-progress"], check=True)
    folders[name] = g
r = realism_checks_of(Path("/work/main/configs/anatomy_2mm.yaml"), Path("/work/anat/manifest.json"), Path("/work/anat/data"),
                      folders, 8, OUT / "realism")
for name, x in r.items():
    b = x["checks"]["background"]
    print(name, {k: b[k] for k in ("synthetic_fraction_nonzero", "synthetic_rms")}, [round(f, 3) for f in b["per_case_fraction"]])
