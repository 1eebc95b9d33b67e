"""benchmarks/device_session.sh's job runner, with stand-ins for python3 and nvidia-smi: what a lease would run,
checked without a GPU (a wrong argument there costs device minutes and a machine start)."""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "device_session.sh"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def _job(tmp_path: Path, env: dict[str, str]) -> tuple[str, list[str]]:
    """Run the script's `job` in a scratch JOB / REPO with python3 recording its arguments, one line a call."""
    bin_dir, job, repo = tmp_path / "bin", tmp_path / "job", tmp_path / "repo"
    for d in (bin_dir, job, repo):
        d.mkdir(exist_ok=True)
    calls = tmp_path / "calls.txt"
    (bin_dir / "python3").write_text(f'#!/bin/sh\necho "$*" >> {calls}\n')
    (bin_dir / "nvidia-smi").write_text("#!/bin/sh\necho stand-in\n")
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    # the job reads its tasks and their arguments from the environment: none of the caller's may leak in
    inherited = {k: v for k, v in os.environ.items()
                 if k not in ("TASK", "TASKS", "FIRST_TASKS", "PAR_TASKS") and not k.startswith("QUALITY_ARGS")}
    run = subprocess.run(["bash", str(SCRIPT), "job"], capture_output=True, text=True, timeout=60,
                         env={**inherited, "PATH": f"{bin_dir}:{os.environ['PATH']}", "DEVICE_SESSION_JOB": str(job),
                              "DEVICE_SESSION_REPO": str(repo), **env})
    assert run.returncode == 0, run.stderr
    return run.stdout, calls.read_text().splitlines() if calls.exists() else []


def test_the_script_parses():
    assert subprocess.run(["bash", "-n", str(SCRIPT)]).returncode == 0


def test_later_quality_scale_jobs_run_in_order_in_their_own_folders_on_the_first_ones_data(tmp_path):
    first = tmp_path / "job" / "quality_scale"
    (first / "data").mkdir(parents=True)
    (first / "data" / "anatomy.json").write_text("{}")
    (first / "manifest.json").write_text("{}")
    out, calls = _job(tmp_path, {"TASKS": "quality_scale quality_scale2 quality_scale3",
                                 "QUALITY_ARGS": "--cases 8 --sampler euler", "QUALITY_ARGS2": "--cases 8",
                                 "QUALITY_ARGS3": "--cases 8 --model /tmp/m --runs x0:1"})
    job = tmp_path / "job"
    assert calls == [f"benchmarks/quality_scale.py --out {job}/quality_scale --cases 8 --sampler euler",
                     f"benchmarks/quality_scale.py --out {job}/quality_scale2 --cases 8",
                     f"benchmarks/quality_scale.py --out {job}/quality_scale3 --cases 8 --model /tmp/m --runs x0:1"]
    for n in (2, 3):  # the data written once, linked
        assert (job / f"quality_scale{n}" / "data").resolve() == (first / "data").resolve()
        assert (job / f"quality_scale{n}" / "manifest.json").resolve() == (first / "manifest.json").resolve()
    assert out.index("== quality_scale2 ") < out.index("== quality_scale3 ") < out.index("JOB DONE")


def test_a_later_job_without_the_first_ones_data_links_nothing(tmp_path):
    _, calls = _job(tmp_path, {"TASKS": "quality_scale3"})
    assert calls == [f"benchmarks/quality_scale.py --out {tmp_path}/job/quality_scale3"]
    assert not (tmp_path / "job" / "quality_scale3" / "data").exists()
