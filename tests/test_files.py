"""medidiff.files: temporaries never outlive a SIGTERM; staged folders swap whole."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from medidiff.files import staged_dir

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("kind", ["file", "folder"])
def test_sigterm_removes_temporaries_and_keeps_the_old_version(tmp_path, kind):
    target = tmp_path / ("out.nii.gz" if kind == "file" else "cache")
    if kind == "file":
        target.write_text("old")
    else:
        target.mkdir()
        (target / "cache.json").write_text("old")
    # The command's work, run through the real CLI entry point (which installs the SIGTERM
    # handler): a NIfTI write (or a staged folder) that is killed half-way.
    script = textwrap.dedent(f"""
        import time
        from pathlib import Path
        import nibabel, numpy as np
        from medidiff.cli import generate_cmd, main

        def slow_save(img, path):
            Path(path).write_text("half")
            print("ready", flush=True)
            time.sleep(60)

        def work(args):
            target = Path({str(target)!r})
            if {kind!r} == "file":
                from medidiff.io import write_nifti
                nibabel.save = slow_save
                write_nifti(target, np.zeros((2, 2, 2), np.float32), np.eye(4), sidecar=False)
            else:
                from medidiff.files import staged_dir
                with staged_dir(target) as stage:
                    slow_save(None, stage / "cache.json")

        generate_cmd._generate = work
        main.main(["generate", "--model", "m", "--num", "1", "--out", "o"])
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]  # no .tmp_* left
    assert (target if kind == "file" else target / "cache.json").read_text() == "old"


def test_staged_dir_replaces_the_whole_folder(tmp_path):
    final = tmp_path / "cache"
    final.mkdir()
    (final / "shard_00009.safetensors").write_text("stale")
    with staged_dir(final) as stage:
        (stage / "cache.json").write_text("new")
    assert sorted(p.name for p in final.iterdir()) == ["cache.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache"]
