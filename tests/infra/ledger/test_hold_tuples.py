"""Holds read apart in bulk (core.holds.HoldDecider.columns, mapped by
infra.ledger.mappers.hold_columns) are stored exactly as the decisions `decide` makes of them
(decision_tuple): random features, order books, regimes, weights and thresholds. Compared as
the driver's parameters, the JSON text included, on SQLite and PostgreSQL's dialects."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from psycopg.types.json import Json
from sqlalchemy import Dialect
from sqlalchemy.dialects.postgresql import psycopg
from sqlalchemy.dialects.sqlite import pysqlite as sqlite

from core.agents.brief import REGIME_FEATURES
from core.agents.panel import RulePanel
from core.agents.rules import BearAgent, BullAgent
from core.consensus import ConsensusConfig
from core.decision import Sizing
from core.features.order_book import BOOK_FEATURE_NAMES
from core.holds import HoldDecider, HoldRows, HoldSettings, NotAHold
from core.models.policy import PolicyConfig
from infra.ledger.driver_insert import DriverInsert
from infra.ledger.json_text import dumps
from infra.ledger.mappers import DECISION_COLUMNS, decision_tuple, hold_columns
from infra.ledger.models import DecisionRow
from tests.infra.ledger.test_record_holds import SETTINGS

NAMES = ("ema_ratio_12", "macd_hist", "rsi_14", "trend_regime", "vol_regime_pct", "atr_14")
T0 = int(datetime(2024, 5, 1, tzinfo=UTC).timestamp())
LIMITS = SETTINGS.limits  # the ledger tests' holds' limits: never read by a hold
finite = st.floats(-2.0, 2.0, allow_nan=False)


@st.composite
def holds(draw: st.DrawFn) -> tuple[HoldRows, HoldDecider]:
    n = draw(st.integers(1, 12))
    tradeable = draw(st.booleans())
    consensus = ConsensusConfig(
        require_significance=draw(st.booleans()),
        regime_weights=draw(
            st.sampled_from(
                [
                    {},
                    {"trend_up": {"model": 0.2, "bull": 0.6}, "range": {"bear": 0.0}},
                    {"range": dict.fromkeys(("model", "bull", "bear"), 0.0)},  # nothing weighs
                ]
            )
        ),
        policy=PolicyConfig(horizon=4, min_edge=draw(st.sampled_from([0.0, 0.001]))),
    )
    entering = tradeable or not consensus.require_significance
    # The policy must hold a flat symbol: an edge at or below the entry bar, or NaN.
    top = consensus.policy.min_edge if entering else 0.05
    edges = draw(st.lists(st.floats(-0.05, top) | st.just(float("nan")), min_size=n, max_size=n))
    value = finite | st.sampled_from([float("nan"), float("inf"), -0.0])
    features = np.array(draw(st.lists(st.tuples(*[value] * len(NAMES)), min_size=n, max_size=n)))
    features[:, 2] = np.abs(features[:, 2]) / 2  # RSI in [0, 1]
    with_book = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    books = {
        i: {name: draw(finite) for name in BOOK_FEATURE_NAMES} for i, b in enumerate(with_book) if b
    }
    unread = draw(st.sets(st.sampled_from(REGIME_FEATURES)))  # the regime without them
    k = np.arange(n)
    rows = HoldRows(
        account="bt",
        timeframe="5m",
        symbols=("BTC/USDT", "ETH/USDT"),
        symbol=k % 2,
        opened=T0 + (k // 2) * 300,
        close=np.array(draw(st.lists(st.floats(0.01, 1e5), min_size=n, max_size=n))),
        probability=np.array(draw(st.lists(st.floats(0.0, 1.0), min_size=n, max_size=n))),
        edge=np.array(edges),
        index={name: i for i, name in enumerate(NAMES) if name not in unread},
        features=features,
        books=books,
    )
    least = draw(st.sampled_from([0.5, 0.55, 0.6]))
    hold_settings = HoldSettings(
        "m", "1", "fs", tradeable, {}, consensus, Sizing(Decimal(10)), LIMITS
    )
    agents = (BullAgent(least), BearAgent(0.55))
    panel = RulePanel(agents if draw(st.booleans()) else agents[::-1])
    return rows, HoldDecider(hold_settings, panel)


DIALECTS = (sqlite.dialect(), psycopg.dialect())
for _dialect in DIALECTS:
    _dialect._json_serializer = dumps  # as the ledger's engines are made


def _stored(insert: DriverInsert, rows: list[tuple]) -> list[tuple]:
    """The driver's parameters, a JSON value as the text it is sent as."""
    return [tuple(_text(v) for v in row) for row in insert.parameters(rows)]


def _text(value: object) -> object:
    """A psycopg JSON value as psycopg writes it: with its own `dumps`, else the engine's."""
    return (value.dumps or dumps)(value.obj) if isinstance(value, Json) else value


@settings(max_examples=150, deadline=None)
@given(holds(), st.sampled_from(DIALECTS))
def test_columns_when_stored_then_each_row_is_the_decision_tuple_of_decide(
    drawn: tuple[HoldRows, HoldDecider], dialect: Dialect
) -> None:
    rows, decider = drawn
    insert = DriverInsert(DecisionRow.__table__, DECISION_COLUMNS, dialect)
    made = decider.columns(rows)
    apart = _stored_columns(insert, hold_columns(made, rows, decider.settings))
    whole = [decision_tuple(d) for d in made.decided]
    decided = {d.decision_id: decision_tuple(d) for d in decider.decisions(rows)}
    assert len(made.decision_id) == len(rows) - len(rows.books)  # read apart, but book rows
    assert sorted(apart + _stored(insert, whole)) == sorted(_stored(insert, list(decided.values())))


def _stored_columns(insert: DriverInsert, columns: dict) -> list[tuple]:
    return [tuple(_text(v) for v in row) for row in insert.column_parameters(columns)]


@settings(max_examples=10, deadline=None)
@given(holds())
def test_columns_when_a_feature_is_missing_then_every_row_is_decided_whole_as_no_trade(
    drawn: tuple[HoldRows, HoldDecider],
) -> None:
    rows, decider = drawn
    rows = HoldRows(**{**rows.__dict__, "index": {"rsi_14": 2}})  # the agents' other features gone
    made = decider.columns(rows)
    assert not made.decision_id
    assert len(made.decided) == len(rows)
    assert {m.consensus.action.value for m in made.decided} == {"NO_TRADE"}
    assert [decision_tuple(m) for m in made.decided] == [
        decision_tuple(d) for d in decider.decisions(rows)
    ]


@settings(max_examples=5, deadline=None)
@given(holds())
def test_columns_when_two_agents_are_of_one_kind_then_refused_for_decisions(
    drawn: tuple[HoldRows, HoldDecider],
) -> None:
    rows, decider = drawn
    twins = HoldDecider(decider.settings, RulePanel((BullAgent(0.5), BullAgent(0.6))))
    assert not twins.plain
    with pytest.raises(NotAHold):
        twins.columns(rows)


@settings(max_examples=10, deadline=None)
@given(holds(), st.sampled_from(['say "up"', "back\\slash", "caf\u00e9", "tab\there", "100%"]))
def test_votes_when_what_agents_quote_needs_escaping_then_written_as_json_writes_it(
    drawn: tuple[HoldRows, HoldDecider], quoted: str
) -> None:
    rows, decider = drawn
    made = decider.columns(rows)
    made = replace(made, said=[quoted + s for s in made.said], seen=[s + quoted for s in made.seen])
    votes = hold_columns(made, rows, decider.settings)["votes"]
    assert votes == [
        dumps(
            [
                v.as_json(full=False) | {"reason": reason}
                for v, reason in zip(made.vote_cases[c], made.vote_reasons(i), strict=True)
            ]
        )
        for i, c in enumerate(made.case)
    ]
