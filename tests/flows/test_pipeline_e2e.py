"""End to end on real candles: the pipeline flow writes a consistent ledger and an MLflow
champion; a signed kill switch stops new orders in the next decision run; a forged one is
refused and recorded."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from mlflow import MlflowClient

from core.features.order_book import BOOK_FEATURE_NAMES
from core.orders import OrderStatus
from core.portfolio import replay_fills
from core.risk.limits import DenialCode
from core.safety.signing import sign
from core.types import Side
from services import bootstrap
from tests.conftest import GENETRADER
from tests.core.features.test_order_book_features import recorded_book

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]

REPLAY = 24
FIRST_ROWS = 1500


def write_real_candles(data_dir: Path, rows: int) -> None:
    """Real Binance candles from the shared data, cut to `rows` (as if downloaded then)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    for pair in ("BTC_USDT", "ETH_USDT"):
        frame = pd.read_feather(GENETRADER / f"{pair}-1h.feather").head(rows)
        frame.to_feather(data_dir / f"{pair}-1h.feather")


@pytest.fixture
def env(app_settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("TRADEFLOW_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("TRADEFLOW_REPLAY_CANDLES", str(REPLAY))
    # A low bar to act, so that a short real window produces orders to check.
    monkeypatch.setenv("TRADEFLOW_CONSENSUS_THRESHOLD", "0.02")
    # Balanced labels (any rise counts), so a model trained on this short window is not
    # one-sided; the replay then trades both ways, which is what the ledger checks need.
    monkeypatch.setenv("TRADEFLOW_LABEL_COST", "0")
    # A short window rarely proves an edge: trade on it anyway, so orders exist to check.
    monkeypatch.setenv("TRADEFLOW_POLICY_REQUIRE_SIGNIFICANCE", "false")
    write_real_candles(tmp_path / "data", FIRST_ROWS)
    app_settings.cache_clear()
    return app_settings()


def test_pipeline_when_run_on_real_candles_then_ledger_and_registry_are_consistent(
    env,
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
) -> None:
    from flows.pipeline import pipeline

    report = pipeline()
    ledger = bootstrap.ledger(env)
    for symbol in env.symbols:  # every real row stored once
        assert ledger.candles.count("binance", symbol, "1h") == FIRST_ROWS
    check_model(env, report)
    orders = check_decisions(env, ledger)
    check_fills(env, ledger, orders)

    # A second run (a restart) decides nothing twice and places no order twice.
    again = pipeline()
    assert again.decisions.skipped_existing == REPLAY * len(env.symbols)
    assert again.decisions.orders == 0
    assert len(ledger.orders.find(env.account)) == len(orders)
    assert report.training.registered.version != again.training.registered.version
    check_live_candle(env, ledger, monkeypatch)


def check_model(env, report) -> None:  # type: ignore[no-untyped-def]
    """Registered, champion, trained only on data before the replayed window."""
    client = MlflowClient(env.tracking_uri)
    champion = client.get_model_version_by_alias(env.model_name, "champion")
    assert str(champion.version) == report.training.registered.version == "1"
    # The newest training row's label reads the close 4 h later: still before the replay.
    newest = pd.Timestamp(report.training.ranges["training"][1])
    assert newest + pd.Timedelta(hours=4) < pd.Timestamp(report.replay_from)


def check_decisions(env, ledger) -> dict:  # type: ignore[no-untyped-def]
    """One per symbol per replayed candle, with votes and inputs; approved ones have orders."""
    decisions = ledger.orders.decisions(env.account)
    assert len(decisions) == REPLAY * len(env.symbols)
    assert {d.model_version for d in decisions} == {"1"}
    assert all(len(d.votes) == 2 and d.feature_set_version for d in decisions)
    # Every agent read its features: none abstained with an error.
    assert not [v for d in decisions for v in d.votes if v.reason.startswith("agent failed")]
    approved = [d for d in decisions if d.risk_approved]
    orders = {o.client_order_id: o for o in ledger.orders.find(env.account)}
    assert approved
    assert {d.client_order_id for d in approved} == set(orders)
    return orders


def check_fills(env, ledger, orders) -> None:  # type: ignore[no-untyped-def]
    """At the open of the candle after the decision, moved against the order by slippage;
    positions and cash agree with the fills, exactly."""
    fills = ledger.fills.history(env.account)
    assert fills
    by_order = {d.client_order_id: d for d in ledger.orders.decisions(env.account)}
    for fill in fills:
        decided = by_order[fill.client_order_id]
        assert fill.filled_at == decided.candle_time + timedelta(hours=1)
        candle = ledger.candles.load("binance", fill.symbol, "1h", until=fill.filled_at, limit=1)
        open_price = Decimal(repr(float(candle["open"].iloc[-1])))
        sign_ = 1 if fill.side is Side.BUY else -1
        slipped = open_price * (1 + sign_ * Decimal("0.0005"))
        assert fill.price == slipped.quantize(Decimal("1e-8"))
        assert orders[fill.client_order_id].status is OrderStatus.FILLED
    assert ledger.fills.positions(env.account) == replay_fills(fills)
    spent = sum(
        (f.price * f.quantity * (1 if f.side is Side.BUY else -1) + f.fee for f in fills),
        Decimal(0),
    )
    assert ledger.accounts.cash(env.account) == env.starting_cash - spent


def check_live_candle(env, ledger, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """One new candle closes; the hourly trade flow ingests it and decides just that one (a
    2024 candle, stale by now: decided and recorded, denied STALE_CANDLE, nothing sent). An
    extra timeframe whose file is missing fails the run, after the decisions."""
    from flows.ingest import IngestFailed
    from flows.trade import trade

    write_real_candles(Path(env.data_dir), FIRST_ROWS + 1)
    new_open = pd.read_feather(Path(env.data_dir) / "BTC_USDT-1h.feather")["date"].iloc[-1]
    # A live order book for BTC was stored at the new candle's close (ccxt's recorded one).
    book = recorded_book(new_open.to_pydatetime() + timedelta(hours=1))
    assert ledger.microstructure.record_order_book(book)
    monkeypatch.setenv("TRADEFLOW_EXTRA_TIMEFRAMES", "4h")  # no 4h files: that ingest fails
    bootstrap.get_settings.cache_clear()
    started = datetime.now(tz=UTC)
    with pytest.raises(IngestFailed, match="BTC/USDT 4h"):
        trade()
    assert ledger.candles.count("binance", "BTC/USDT", "1h") == FIRST_ROWS + 1
    newest = ledger.orders.decisions(env.account)[-len(env.symbols) :]
    assert {d.candle_time for d in newest} == {new_open.to_pydatetime()}
    acted = [d for d in newest if d.action != "HOLD"]
    assert all(d.denials[0].code is DenialCode.STALE_CANDLE for d in acted)
    assert ledger.orders.find(env.account, status=OrderStatus.NEW) == []  # nothing to send
    assert all(d.decided_at >= started for d in newest)  # wall clock, not the replay clock
    by_symbol = {d.symbol: d for d in newest}
    assert set(by_symbol["BTC/USDT"].order_book_features or {}) == set(BOOK_FEATURE_NAMES)
    assert all("book imbalance" in v.reason for v in by_symbol["BTC/USDT"].votes)
    assert by_symbol["ETH/USDT"].order_book_features is None


def signed_post(api: TestClient, secret: str, reason: str):  # type: ignore[no-untyped-def]
    import time

    now = int(time.time())
    return api.post(
        "/api/v1/safety/kill-switch",
        json={"action": "activate", "reason": reason},
        headers={
            "X-Kill-Switch-Timestamp": str(now),
            "X-Kill-Switch-Signature": sign(secret, "activate", now),
        },
    )


def test_kill_switch_when_signed_then_next_decision_run_places_no_order_and_forged_is_refused(
    env,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
) -> None:
    from flows.ingest import ingest
    from flows.pipeline import pipeline
    from flows.replay import replay
    from serving.app import create_app

    # Freeze rather than close; a one-candle horizon and an entry bar inside the model's range
    # of edges on this window (+0.0002 .. +0.0009): it keeps entering and leaving, so the
    # halted run has BUY and SELL decisions for the gate to stop.
    monkeypatch.setenv("TRADEFLOW_CLOSE_POSITIONS_ON_KILL", "false")
    monkeypatch.setenv("TRADEFLOW_LABEL_HORIZON", "1")
    monkeypatch.setenv("TRADEFLOW_POLICY_MIN_EDGE", "0.0006")
    bootstrap.forget()
    env = bootstrap.get_settings()

    pipeline()
    ledger = bootstrap.ledger(env)
    with TestClient(create_app(env)) as api:
        assert signed_post(api, "wrong", "forged").status_code == 401
        assert api.get("/api/v1/safety/status").json()["kill_switch"]["active"] is False
        secret = env.kill_switch_secret.get_secret_value()
        assert signed_post(api, secret, "e2e drill").status_code == 200
    # The switch closes what the policy still holds (its own orders); after it, nothing new.
    orders_before = len(ledger.orders.find(env.account))

    write_real_candles(tmp_path / "data", FIRST_ROWS + 30)  # 30 newer real candles arrive
    assert [r.inserted for r in ingest()] == [30, 30]
    report = replay(candles=30)

    assert report.orders == 0
    assert len(ledger.orders.find(env.account)) == orders_before
    since = report.candle_times[0]
    acted = [d for d in ledger.orders.decisions(env.account, since=since) if d.action != "HOLD"]
    reasons = {d.consensus_reason[:60] for d in ledger.orders.decisions(env.account, since=since)}
    assert acted, f"the window should contain BUY/SELL decisions for the gate to stop: {reasons}"
    assert all(d.risk_approved is False and d.client_order_id is None for d in acted)
    assert all("TRADING_HALTED: kill_switch: e2e drill" in map(str, d.denials) for d in acted)
    rejected = [e for e in ledger.requests.recent() if not e.accepted]
    assert [e.rejection for e in rejected] == ["signature does not match"]
    # The halted replay completed, and says plainly that trading is halted, why and by whom.
    from tests.flows.test_run_outcomes import artifact

    assert "trading halted: kill_switch: e2e drill (activated by testclient at" in artifact(
        "decisions"
    )
