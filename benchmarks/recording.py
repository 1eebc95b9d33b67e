"""Where a benchmark's JSON record goes: ``--out``, or ``results/<stem>_<device>_<date>.json`` beside
the scripts (the naming every recorded file in results/ follows)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any


def write_record(record: dict[str, Any], out: str | None, *, stem: str, device: str) -> Path:
    """Write ``record`` as indented JSON and say where; returns the path."""
    path = Path(out) if out else (Path(__file__).parent / "results" /
                                  f"{stem}_{device.replace(' ', '-')}_{dt.date.today():%Y%m%d}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2))
    print(f"written {path}")
    return path
