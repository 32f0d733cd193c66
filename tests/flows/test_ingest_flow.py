"""The ingest flow maps one task per symbol: a bad symbol fails alone, the others land."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from services import bootstrap
from tests.conftest import GENETRADER

pytestmark = pytest.mark.usefixtures("prefect_harness")


def test_ingest_when_one_symbol_has_no_file_then_it_fails_alone_and_others_are_stored(
    app_settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
) -> None:
    from flows.ingest import IngestFailed, ingest

    data = tmp_path / "data"
    data.mkdir()
    for pair in ("BTC_USDT", "ETH_USDT"):
        shutil.copy(GENETRADER / f"{pair}-1h.feather", data)
    monkeypatch.setenv("TRADEFLOW_DATA_DIR", str(data))
    monkeypatch.setenv("TRADEFLOW_SYMBOLS", "BTC/USDT,NOPE/USDT,ETH/USDT")
    app_settings.cache_clear()
    settings = app_settings()

    with pytest.raises(
        IngestFailed,
        match=r"1 of 3 ingest tasks failed \(stored: BTC/USDT 1h, ETH/USDT 1h\)"
        r".*NOPE/USDT.*NOPE_USDT-1h",
    ):
        ingest()
    ledger = bootstrap.ledger(settings)
    assert ledger.candles.count("binance", "BTC/USDT", "1h") == 5980
    assert ledger.candles.count("binance", "ETH/USDT", "1h") == 5980
    assert ledger.candles.count("binance", "NOPE/USDT", "1h") == 0
