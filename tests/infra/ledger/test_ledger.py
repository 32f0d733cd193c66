"""Ledger behaviour, run on SQLite and on PostgreSQL (fixture `ledger` is parametrised)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.exc import IntegrityError

from core.agents.base import Vote
from core.consensus import Consensus
from core.decision import Decision, DecisionInput
from core.errors import SignatureReplayed
from core.orders import Fill, Order, OrderEvent, OrderStatus, client_order_id_for, decision_id_for
from core.risk.limits import Denial, DenialCode, RiskVerdict
from core.types import Action, Side, Symbol
from infra.ledger.accounts import UnknownAccount
from infra.ledger.database import migrate
from infra.ledger.ledger import Ledger

T0 = datetime(2024, 9, 1, 12, tzinfo=UTC)


def make_decision(t: datetime = T0, approved: bool = True, qty: str = "0.01753") -> Decision:
    inp = DecisionInput(
        "paper",
        Symbol("BTC/USDT"),
        "1h",
        t,
        Decimal("57012.34"),
        {"rsi_14": 0.5},
        0.61,
        "m",
        "1",
        "fs",
        0.004,
        True,
    )
    did = decision_id_for("paper", "BTC/USDT", "1h", t)
    order = (
        Order(
            client_order_id_for(did),
            did,
            Symbol("BTC/USDT"),
            Side.BUY,
            Decimal(qty),
            t + timedelta(hours=1),
            t + timedelta(hours=1),
        )
        if approved
        else None
    )
    verdict = (
        RiskVerdict(())
        if approved
        else RiskVerdict((Denial(DenialCode.TRADING_HALTED, "kill_switch: x"),))
    )
    return Decision(
        did,
        inp,
        (Vote("bull", Action.BUY, 0.7, "r"),),
        Consensus(Action.BUY, 0.4, 0.4, "r"),
        None,
        verdict,
        order,
        t + timedelta(hours=1),
    )


def test_migrate_when_run_twice_then_idempotent(ledger_url: str) -> None:
    migrate(ledger_url)
    migrate(ledger_url)


def test_upsert_candles_when_same_real_data_twice_then_same_rows(
    ledger: Ledger, btc_1h: pd.DataFrame
) -> None:
    chunk = btc_1h.head(300)
    assert ledger.candles.upsert("binance", "BTC/USDT", "1h", chunk) == 300
    assert ledger.candles.upsert("binance", "BTC/USDT", "1h", chunk) == 0
    assert ledger.candles.upsert("binance", "BTC/USDT", "1h", btc_1h.head(350)) == 50
    assert ledger.candles.count("binance", "BTC/USDT", "1h") == 350
    loaded = ledger.candles.load("binance", "BTC/USDT", "1h")
    assert not loaded.pop("is_filled").any()
    pd.testing.assert_frame_equal(loaded, btc_1h.head(350).reset_index(drop=True))


def test_load_candles_when_until_and_limit_then_newest_before_until(
    ledger: Ledger, btc_1h: pd.DataFrame
) -> None:
    ledger.candles.upsert("binance", "BTC/USDT", "1h", btc_1h.head(100))
    until = btc_1h["open_time"].iloc[49].to_pydatetime()
    out = ledger.candles.load("binance", "BTC/USDT", "1h", until=until, limit=10)
    assert list(out["open_time"]) == list(btc_1h["open_time"].iloc[40:50])


def test_record_decision_when_recorded_twice_then_one_decision_and_one_order(
    ledger: Ledger,
) -> None:
    ledger.accounts.ensure("paper", Decimal("10000"), T0)
    d = make_decision()
    assert ledger.orders.record_decision(d, "paper") is True
    assert ledger.orders.record_decision(d, "paper") is False
    assert len(ledger.orders.find("paper")) == 1
    assert ledger.orders.get(d.order.client_order_id).quantity == Decimal("0.01753")  # type: ignore[union-attr]


def test_record_decision_when_denied_then_reasons_kept_and_no_order(ledger: Ledger) -> None:
    ledger.orders.record_decision(make_decision(approved=False), "paper")
    [row] = ledger.orders.decisions("paper")
    assert row.risk_approved is False
    assert [str(d) for d in row.denials] == ["TRADING_HALTED: kill_switch: x"]
    assert row.client_order_id is None
    assert ledger.orders.find("paper") == []


def test_record_fill_when_same_fill_twice_then_applied_once_with_exact_money(
    ledger: Ledger,
) -> None:
    ledger.accounts.ensure("paper", Decimal("10000"), T0)
    d = make_decision()
    ledger.orders.record_decision(d, "paper")
    coid = d.order.client_order_id  # type: ignore[union-attr]
    ledger.orders.transition(coid, OrderEvent.SUBMIT, T0)
    f = Fill(
        coid,
        Symbol("BTC/USDT"),
        Side.BUY,
        Decimal("0.01753"),
        Decimal("57040.85617"),
        Decimal("0.99992620866"),
        T0 + timedelta(hours=1),
        f"{coid}-1",
    )
    assert ledger.fills.record("paper", f) is True
    assert ledger.fills.record("paper", f) is False
    assert ledger.orders.get(coid).status is OrderStatus.FILLED  # type: ignore[union-attr]
    pos = ledger.fills.positions("paper")[Symbol("BTC/USDT")]
    assert pos.quantity == Decimal("0.01753")
    assert pos.avg_price == Decimal("57040.85617")
    assert ledger.accounts.cash("paper") == Decimal("10000") - Decimal("0.01753") * Decimal(
        "57040.85617"
    ) - Decimal("0.99992620866")
    assert len(ledger.fills.history("paper")) == 1


def test_order_table_when_second_order_same_client_id_then_integrity_error(ledger: Ledger) -> None:
    from infra.ledger.models import OrderRow

    d = make_decision()
    ledger.orders.record_decision(d, "paper")
    with pytest.raises(IntegrityError), ledger._sessions.write() as s:
        s.add(
            OrderRow(
                client_order_id=d.order.client_order_id,
                decision_id=d.decision_id,  # type: ignore[union-attr]
                account="paper",
                broker="paper",
                symbol="BTC/USDT",
                side="buy",
                order_type="market",
                quantity=Decimal(1),
                status="new",
                market_time=T0,
                created_at=T0,
                updated_at=T0,
                submit_attempts=0,
            )
        )


def test_kill_switch_when_set_then_persists_and_replayed_signature_refused(ledger: Ledger) -> None:
    assert ledger.safety.kill_switch().active is False
    ledger.requests.set_kill_switch(True, "ops test", "ab" * 32, T0, "127.0.0.1", 1)
    assert ledger.safety.kill_switch().active is True
    assert ledger.safety.kill_switch().reason == "ops test"
    with pytest.raises(SignatureReplayed):
        ledger.requests.set_kill_switch(False, "again", "ab" * 32, T0, "127.0.0.1", 1)
    assert ledger.safety.kill_switch().active is True  # the replay changed nothing
    events = ledger.requests.recent()
    assert [e.accepted for e in events] == [True]


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.decimals(
        min_value=Decimal("0.000000000000000001"),
        max_value=Decimal("99999999999"),
        places=18,
        allow_nan=False,
        allow_infinity=False,
    )
)
def test_money_property_when_any_decimal_stored_then_read_back_exactly(
    ledger: Ledger, value: Decimal
) -> None:
    from infra.ledger.models import AccountRow

    with ledger._sessions.write() as s:
        row = s.get(AccountRow, "prop")
        if row is None:
            s.add(AccountRow(account="prop", starting_cash=value, cash=value, updated_at=T0))
        else:
            row.cash = value
    assert ledger.accounts.cash("prop") == value


def test_migrations_when_applied_then_schema_matches_the_models(ledger_url: str) -> None:
    """Alembic's own autogenerate comparison: no table, column, index or constraint of the
    models is missing from (or extra in) what the migrations build."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlalchemy import create_engine

    from infra.ledger.models import Base

    migrate(ledger_url)
    engine = create_engine(ledger_url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(
                MigrationContext.configure(conn, opts={"compare_type": False}), Base.metadata
            )
    finally:
        engine.dispose()
    assert diff == []


def test_migration_0004_when_ledger_has_filled_orders_then_filled_quantity_and_cost_are_exact(
    ledger_url: str, ledger: Ledger
) -> None:
    """Upgrade an existing ledger: orders filled under 0003 get their fills' exact totals."""
    ledger.accounts.ensure("paper", Decimal("10000"), T0)
    d = make_decision(qty="0.10000001")
    ledger.orders.record_decision(d, "paper")
    coid = d.order.client_order_id  # type: ignore[union-attr]
    ledger.orders.transition(coid, OrderEvent.SUBMIT, T0)
    fill = Fill(coid, Symbol("BTC/USDT"), Side.BUY, Decimal("0.10000001"),
                Decimal("60000.12345678"), Decimal("6.1"), T0, "f-1")  # fmt: skip
    assert ledger.fills.record("paper", fill)
    migrate(ledger_url, "0003", downgrade=True)
    migrate(ledger_url)
    order = ledger.orders.get(coid)
    assert order is not None
    assert order.filled_quantity == Decimal("0.10000001")
    assert order.filled_cost == Decimal("0.10000001") * Decimal("60000.12345678")


def test_migration_0014_when_decisions_exist_then_kept_and_set_order_ids_stay_unique(
    ledger_url: str, ledger: Ledger
) -> None:
    """Down to 0013 (the unique constraint) and up again (the partial unique index): every
    decision is kept, holds without an order are many, an order id is still taken once."""
    from sqlalchemy import create_engine, insert, inspect, select

    from infra.ledger.mappers import decision_values
    from infra.ledger.models import DecisionRow

    ledger.accounts.ensure("paper", Decimal("10000"), T0)
    ledger.orders.record_decision(make_decision(), "paper")
    for k in (1, 2):
        ledger.orders.record_decision(make_decision(T0 + timedelta(hours=k), False), "paper")
    migrate(ledger_url, "0013", downgrade=True)
    migrate(ledger_url)
    engine = create_engine(ledger_url)
    try:
        with engine.begin() as c:
            rows = c.execute(select(DecisionRow.client_order_id)).scalars().all()
            assert sorted(rows, key=str) == sorted([None, None, client_order_id_for(
                decision_id_for("paper", "BTC/USDT", "1h", T0))], key=str)  # fmt: skip
        partial = {i["name"]: i for i in inspect(engine).get_indexes("decisions")}[
            "uq_decisions_client_order_id"
        ]
        assert partial["unique"]
        where = partial["dialect_options"][f"{engine.dialect.name}_where"]
        assert "client_order_id IS NOT NULL" in str(where)
        twin = decision_values(make_decision()) | {"decision_id": "another"}
        with pytest.raises(IntegrityError, match="client_order_id"), engine.begin() as c:
            c.execute(insert(DecisionRow), [twin])
    finally:
        engine.dispose()


def test_accounts_when_the_account_was_never_made_then_unknown_account_names_it(
    ledger: Ledger,
) -> None:
    ledger.accounts.ensure("paper", Decimal("10000"), T0)
    assert ledger.accounts.starting_cash("paper") == Decimal("10000")
    assert ledger.accounts.opened_at("paper") == T0
    for read in (ledger.accounts.cash, ledger.accounts.starting_cash, ledger.accounts.opened_at):
        with pytest.raises(UnknownAccount, match="unknown account 'live'"):
            read("live")
