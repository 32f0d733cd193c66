"""A real exchange account, as ccxt's recorded Binance responses describe it, through ccxt's own
parsing: the first start takes its starting cash from the exchange and leaves what the account
already held alone; a fee taken in the base asset moves the holding; dust is tolerated, a real
difference is not."""

from __future__ import annotations

import copy
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from core.agents.base import Vote
from core.clock import FakeClock
from core.consensus import Consensus
from core.decision import Decision, DecisionInput
from core.orders import Order, OrderEvent
from core.risk.limits import RiskVerdict
from core.types import Action, ClientOrderId, DecisionId, Side, Symbol
from infra.alerts import Alerts
from infra.brokers.ccxt_broker import CcxtBroker
from infra.ledger.ledger import Ledger
from infra.market_data.markets import default_rules
from infra.settings import Settings
from services import bootstrap
from services.reconcile import reconcile
from tests.infra.market_data.recorded_binance import RecordedSpotBinance, recorded_spot_cases

CASES = recorded_spot_cases()
SYMBOLS = ["LTC/USDT", "ETH/USDT"]
OUR_ORDER = ClientOrderId(CASES["fetchOrder"]["httpResponse"]["clientOrderId"])
NOW = datetime(2024, 3, 13, 12, tzinfo=UTC)
D = Decimal
DUST = {s: max(r.min_amount, r.amount_step) for s, r in default_rules(SYMBOLS).items()}


def balance(usdt: str, ltc: str = "0.91974100") -> dict[str, Any]:
    """The recorded account (LTC and ETH held before we ever started) with USDT and LTC set."""
    raw = copy.deepcopy(CASES["fetchBalance"]["httpResponse"])
    for row in raw["balances"]:
        if row["asset"] == "LTC":
            row["free"] = ltc
    raw["balances"].append({"asset": "USDT", "free": usdt, "locked": "0.00000000"})
    return raw


def our_buy_filled() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The recorded order, as our buy of 0.2 LTC; its one trade paid 0.0002 LTC in fees."""
    order = copy.deepcopy(CASES["fetchOrder"]["httpResponse"])
    order |= {"side": "BUY", "origQty": "0.20000000", "executedQty": "0.20000000",
              "cummulativeQuoteQty": "13.92600000"}  # fmt: skip
    trade = copy.deepcopy(CASES["fetchMyTrades"]["httpResponse"][0])
    trade |= {"orderId": order["orderId"], "isBuyer": True, "commission": "0.00020000",
              "commissionAsset": "LTC", "time": str(int(time.time() * 1000) + 60_000)}  # fmt: skip
    return order, [trade]


@pytest.fixture
def live(ledger_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    return Settings(
        var_dir=tmp_path, database_url=ledger_url, broker="ccxt", exchange_api_key="k",
        exchange_api_secret="s", symbols=tuple(SYMBOLS), reference_symbol="LTC/USDT",
        whitelist=tuple(SYMBOLS),
    )  # fmt: skip


def exchange(monkeypatch: pytest.MonkeyPatch, **answers: Any) -> CcxtBroker:
    broker = CcxtBroker(RecordedSpotBinance(symbols=SYMBOLS, answers=answers))
    monkeypatch.setattr(bootstrap, "broker", lambda settings: broker)
    return broker


def check(ledger: Ledger, broker: CcxtBroker):  # type: ignore[no-untyped-def]
    since = ledger.accounts.opened_at("paper")
    return reconcile(ledger, broker, "paper", SYMBOLS, FakeClock(NOW), Alerts(), quote="USDT",
                     dust=DUST, since=since)  # fmt: skip


def record_our_buy(ledger: Ledger) -> None:
    did = DecisionId("paper:LTC/USDT:1h:1710331200")
    inp = DecisionInput("paper", Symbol("LTC/USDT"), "1h", NOW, D("69.63"), {}, 0.7, "m", "1", "fs",
                        0.004, True)  # fmt: skip
    order = Order(OUR_ORDER, did, Symbol("LTC/USDT"), Side.BUY, D("0.2"), NOW, NOW)
    vote = (Vote("bull", Action.BUY, 0.7, "r"),)
    decision = Decision(did, inp, vote, Consensus(Action.BUY, 0.4, 0.4, "r"), None,
                        RiskVerdict(()), order, NOW)  # fmt: skip
    ledger.orders.record_decision(decision, "binance")
    ledger.orders.transition(OUR_ORDER, OrderEvent.SUBMIT, NOW)


def test_first_start_when_live_then_cash_from_the_exchange_and_earlier_holdings_left_alone(
    live: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The account traded before (ccxt's recorded trade, 2023): not ours, not a difference.
    broker = exchange(monkeypatch, fetchBalance=balance("1000.50000000"))
    ledger = bootstrap.ledger(live)
    assert ledger.accounts.starting_cash("paper") == D("1000.5")
    assert ledger.accounts.holdings("paper") == {"LTC": D("0.919741"), "ETH": D("0.02229833")}
    report = check(ledger, broker)
    assert (report.passed, report.unexplained) == (True, [])
    # A second start (a new process) keeps the account as it was.
    bootstrap.forget()
    exchange(monkeypatch, fetchBalance=balance("5.00000000"))
    assert bootstrap.ledger(live).accounts.starting_cash("paper") == D("1000.5")


def test_reconcile_when_fee_taken_in_the_base_asset_then_holding_and_cash_agree(
    live: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    exchange(monkeypatch, fetchBalance=balance("1000.00000000"))
    ledger = bootstrap.ledger(live)
    record_our_buy(ledger)
    order, trades = our_buy_filled()
    after = balance("986.07400000", ltc="1.11954100")  # +0.2 bought, -0.0002 fee
    broker = exchange(monkeypatch, fetchOrder=order, fetchMyTrades=trades, fetchBalance=after)
    report = check(ledger, broker)
    assert report.passed, report.unexplained
    assert report.adopted_fills == ["binance-309520010"]
    [fill] = ledger.fills.history("paper")
    assert (fill.fee, fill.fee_in_base) == (D("0.0002"), True)
    position = ledger.fills.positions("paper")[Symbol("LTC/USDT")]
    assert position.quantity == D("0.1998")
    assert ledger.accounts.cash("paper") == D("986.074")


@pytest.mark.parametrize(("ltc", "passes"), [("1.11954110", True), ("1.12954100", False)])
def test_reconcile_when_the_exchange_holds_a_little_more_then_dust_passes_and_more_fails(
    live: Settings, monkeypatch: pytest.MonkeyPatch, ltc: str, passes: bool
) -> None:
    exchange(monkeypatch, fetchBalance=balance("1000.00000000"))
    ledger = bootstrap.ledger(live)
    record_our_buy(ledger)
    order, trades = our_buy_filled()
    after = balance("986.07400000", ltc=ltc)
    report = check(ledger, exchange(monkeypatch, fetchOrder=order, fetchMyTrades=trades,
                                    fetchBalance=after))  # fmt: skip
    assert report.passed is passes
    [line] = report.dust if passes else report.unexplained
    assert line.startswith("position LTC/USDT: ledger 0.1998, broker ")
    assert D(line.rsplit(" ", 1)[1]) == D(ltc) - D("0.919741")
