import json, sys
from pathlib import Path
sys.path.insert(0, "/work/main/benchmarks")
from quality_common import realism_checks_of
out = Path("/work/main/benchmarks/results/mask_cut_cpu_20261202/small_4mm_brain")
res = realism_checks_of(Path("/work/s23/small/runs/brain/resolved_config.yaml"), Path("/work/s22/anat_manifest.json"), Path("/work/s22/anat"),
                        {"control": Path("/work/s23/small/gen/control"), "brain": Path("/work/s23/small/gen/brain"), "brain_w1": Path("/work/s23/small/gen/brain_w1")}, 16, out / "realism")
for name, r in res.items():
    checks = r["results"]["realism"]["checks"] if "results" in r else r["checks"]
    print(name, {k: v.get("pass") for k, v in checks.items()})
