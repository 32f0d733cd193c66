"""Where the real exchange data lives: ../shared/data beside the checkout (DEVELOPERS.md).

A clone made elsewhere from such a checkout (`git clone /path/to/checkout /tmp/x`, or a clone
of that clone) finds it beside the checkout its chain of local origins starts from;
TRADEFLOW_SHARED_DATA overrides all of this.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def locate_shared_data(max_hops: int = 5) -> Path:
    if "TRADEFLOW_SHARED_DATA" in os.environ:
        return Path(os.environ["TRADEFLOW_SHARED_DATA"])
    first = ROOT.parent / "shared" / "data"
    checkout: Path | None = ROOT
    for _ in range(max_hops):
        if checkout is None:
            break
        candidate = checkout.parent / "shared" / "data"
        if candidate.is_dir():
            return candidate
        checkout = _local_origin(checkout)
    return first  # absent: the fixture that needs it says where it looked


def _local_origin(checkout: Path) -> Path | None:
    try:
        url = subprocess.run(
            ["git", "-C", str(checkout), "remote", "get-url", "origin"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    path = Path(url.removeprefix("file://"))
    return path if path.is_absolute() and path.is_dir() else None
