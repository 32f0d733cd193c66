"""A clone made outside the workspace still finds the real data beside its origin."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.shared_data import ROOT, locate_shared_data


def test_locate_when_cloned_elsewhere_twice_then_finds_shared_data_beside_the_first_origin(
    tmp_path: Path,
) -> None:
    expected = locate_shared_data()
    assert (expected / "ohlcv").is_dir()
    first, clone = tmp_path / "a" / "clone", tmp_path / "b" / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(first)], check=True, timeout=120)
    subprocess.run(["git", "clone", "-q", str(first), str(clone)], check=True, timeout=120)
    env = {k: v for k, v in os.environ.items() if k != "TRADEFLOW_SHARED_DATA"}
    out = subprocess.run(
        [sys.executable, "-c", "from tests.shared_data import locate_shared_data as f; print(f())"],
        cwd=clone,
        env=env | {"PYTHONPATH": str(clone)},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert Path(out.stdout.strip()) == expected
