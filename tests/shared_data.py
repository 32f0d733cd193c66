"""Where the real exchange data lives: ../shared/data beside the checkout (DEVELOPERS.md).

A clone made elsewhere from such a checkout (`git clone /path/to/checkout /tmp/x`) finds it
beside the checkout it was cloned from; TRADEFLOW_SHARED_DATA overrides both.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def locate_shared_data() -> Path:
    if "TRADEFLOW_SHARED_DATA" in os.environ:
        return Path(os.environ["TRADEFLOW_SHARED_DATA"])
    candidates = [ROOT.parent / "shared" / "data"]
    origin = _local_origin()
    if origin is not None:
        candidates.append(origin.parent / "shared" / "data")
    return next((c for c in candidates if c.is_dir()), candidates[0])


def _local_origin() -> Path | None:
    try:
        url = subprocess.run(
            ["git", "-C", str(ROOT), "remote", "get-url", "origin"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    path = Path(url.removeprefix("file://"))
    return path if path.is_absolute() and path.is_dir() else None
