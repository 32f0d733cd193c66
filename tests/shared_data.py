"""The real-data location the tests read (the lookup itself lives in infra/shared_data.py,
which the CLI and the benches use too)."""

from __future__ import annotations

from infra.shared_data import ROOT, locate_shared_data

__all__ = ["ROOT", "locate_shared_data"]
