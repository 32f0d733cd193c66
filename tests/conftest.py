"""Shared fixtures. The offline environment is set before Prefect or MLflow is imported."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.settings import OFFLINE_ENV

for _key, _value in OFFLINE_ENV.items():
    os.environ.setdefault(_key, _value)
_PREFECT_HOME = tempfile.mkdtemp(prefix="tradeflow-prefect-")
os.environ["PREFECT_HOME"] = _PREFECT_HOME
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

import pandas as pd  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402

from infra.market_data.files import read_candle_file  # noqa: E402
from tests.shared_data import locate_shared_data  # noqa: E402

# Fixtures over a throwaway MLflow store with a real model (the serving tests share them).
pytest_plugins = ["tests.ml_store_fixtures", "tests.llm_server"]

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = locate_shared_data()
GENETRADER = SHARED_DATA / "ohlcv" / "genetrader-binance-spot-2024"
TEST_DATABASE_URL = os.environ.get(
    "TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not GENETRADER.is_dir():
        pytest.fail(f"real candles not found at {GENETRADER}: set TRADEFLOW_SHARED_DATA")
    return SHARED_DATA


@pytest.fixture(scope="session")
def btc_1h(shared_data: Path) -> pd.DataFrame:
    return read_candle_file(GENETRADER / "BTC_USDT-1h.feather")


@pytest.fixture(scope="session")
def eth_1h(shared_data: Path) -> pd.DataFrame:
    return read_candle_file(GENETRADER / "ETH_USDT-1h.feather")


def _postgres_schema_url() -> Iterator[str]:
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(TEST_DATABASE_URL)
    try:
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:  # a missing server is a broken machine, not a skipped test
        pytest.fail(f"PostgreSQL at {TEST_DATABASE_URL} unavailable: {exc}")
    sep = "&" if "?" in TEST_DATABASE_URL else "?"
    url = f"{TEST_DATABASE_URL}{sep}options=-csearch_path%3D{schema}"
    try:
        yield url
    finally:
        from infra.ledger.database import engine_for

        engine_for(url).dispose()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'ledger.db'}"
        yield url
        from infra.ledger.database import engine_for

        engine_for(url).dispose()
    else:
        yield from _postgres_schema_url()


@pytest.fixture
def ledger(ledger_url: str):  # type: ignore[no-untyped-def]
    from infra.ledger.ledger import open_ledger

    return open_ledger(ledger_url)


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def mlflow_store(tmp_path: Path) -> str:
    from registry.mlflow_registry import configure

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    configure(uri, tmp_path / "artifacts")
    return uri


@pytest.fixture
def app_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shared_data: Path):  # type: ignore[no-untyped-def]
    """Environment-built Settings under tmp_path, the way flows and tasks read them."""
    from services import bootstrap

    monkeypatch.setenv("TRADEFLOW_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("TRADEFLOW_KILL_SWITCH_SECRET", "test-secret-" + uuid.uuid4().hex)
    bootstrap.forget()
    yield bootstrap.get_settings
    bootstrap.forget()
