"""Read models for the API: the safety status and health, each read on one connection with a
handful of indexed queries built once at import, so a busy dashboard costs the database (and
the Python in front of it) little."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Float,
    Integer,
    Row,
    bindparam,
    case,
    cast,
    func,
    select,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from core.candles.timeframe import timeframe_seconds
from core.latency import DECISION_LATENCY_BOUNDS, PREDICT_BOUNDS, LatencyHistogram
from core.records import (
    HealthOverview,
    ModelInUse,
    SafetyEvent,
    SafetyOverview,
    SafetyRequest,
    TradingCounts,
)
from core.risk.limits import Denial
from core.risk.state import Control
from infra.ledger.mappers import control_of, kill_switch_of
from infra.ledger.models import (
    AgentCallRow,
    DecisionRow,
    FillRow,
    KillSwitchEventRow,
    OrderRow,
    PositionRow,
    RefusalTotalRow,
    SafetyEventRow,
    SafetyStateRow,
)
from infra.ledger.requests import bucket_of, hour_of
from infra.ledger.safety import flags_of
from infra.ledger.sessions import Sessions

_S = SafetyStateRow
_CONTROLS = select(_S.control, _S.active, _S.reason, _S.changed_at, _S.until)
_T = RefusalTotalRow
_REFUSALS = select(
    func.sum(case((_T.window_start >= bindparam("minute"), _T.refusals), else_=0)),
    func.sum(_T.refusals),
).where(_T.granularity == "10s", _T.window_start >= bindparam("hour"))
_REFUSALS_DAY = select(func.sum(_T.refusals)).where(
    _T.granularity == "1h", _T.window_start >= bindparam("day")
)
_E = SafetyEventRow
_STEPS = (
    select(_E.at, _E.control, _E.step, _E.detail)
    .where(_E.control == Control.KILL_SWITCH.value)
    .order_by(_E.id.desc())
    .limit(bindparam("limit"))
)
_K = KillSwitchEventRow
_ACCEPTED = (
    select(_K.at, _K.action, _K.accepted, _K.reason, _K.rejection, _K.client)
    .where(_K.accepted.is_(True))
    .order_by(_K.id.desc())
    .limit(bindparam("limit"))
)
_D = DecisionRow
_NEWEST_DECISION = (
    select(_D.model_name, _D.model_version, _D.feature_set_version, _D.decided_at)
    .where(_D.account == bindparam("account"))
    .order_by(_D.candle_time.desc())
    .limit(1)
)

_ACCOUNT = bindparam("account")
_ORDERS_BY_STATUS = (
    select(OrderRow.status, func.count())
    .where(OrderRow.account == _ACCOUNT)
    .group_by(OrderRow.status)
)
_DECISIONS_BY_ACTION = (
    select(_D.action, func.count()).where(_D.account == _ACCOUNT).group_by(_D.action)
)
_DENIED = select(_D.risk_reasons).where(_D.account == _ACCOUNT, _D.risk_approved.is_(False))
_FILLS = select(func.count()).select_from(FillRow).where(FillRow.account == _ACCOUNT)
_POSITIONS = select(PositionRow.symbol, PositionRow.quantity).where(PositionRow.account == _ACCOUNT)
_C = AgentCallRow
# Cost summed in Python per group would need the rows: a gauge's float sum is exact enough.
_LLM = (
    select(
        _C.agent, _C.model, _C.outcome, func.count(), func.sum(_C.tokens_in),
        func.sum(_C.tokens_out), func.sum(_C.cost),
    )
    .join(_D, _D.decision_id == _C.decision_id)
    .where(_D.account == _ACCOUNT)
    .group_by(_C.agent, _C.model, _C.outcome)
)  # fmt: skip


# Decision latency and model time, bucketed in SQL on one round trip: what a scrape reads is
# two histograms, not the decisions. Each value is computed once per row in a materialized CTE:
# inlined, both databases parse a decision's provenance JSON once per bucket (50,000 decisions:
# 0.17 s -> 0.57 s on SQLite, 0.32 s -> 2.8 s on PostgreSQL).
_TF_SECONDS = cast(
    func.substr(_D.timeframe, 1, func.length(_D.timeframe) - 1), Integer
) * case(
    {unit: timeframe_seconds(f"1{unit}") for unit in "mhdw"},
    value=func.substr(_D.timeframe, func.length(_D.timeframe), 1),
)  # fmt: skip


class _SecondsBetween(FunctionElement[float]):
    """Seconds from the second timestamp to the first, in the dialect's own arithmetic."""

    type = Float()
    inherit_cache = True
    name = "seconds_between"


@compiles(_SecondsBetween, "postgresql")
def _seconds_on_postgresql(element: _SecondsBetween, compiler: SQLCompiler, **kw: Any) -> str:
    end, start = (compiler.process(c, **kw) for c in element.clauses)
    return f"EXTRACT(EPOCH FROM ({end} - {start}))"


@compiles(_SecondsBetween, "sqlite")
def _seconds_on_sqlite(element: _SecondsBetween, compiler: SQLCompiler, **kw: Any) -> str:
    end, start = (compiler.process(c, **kw) for c in element.clauses)
    # julianday() is a double of days: rounded to the millisecond, a whole second stays whole
    # (a decision exactly on a bucket's bound falls in it, as on PostgreSQL).
    return f"ROUND((julianday({end}) - julianday({start})) * 86400.0, 3)"


_TIMED = (
    select(
        (_SecondsBetween(_D.decided_at, _D.candle_time) - _TF_SECONDS).label("latency"),
        # NULL where the decision kept no timings (a backtest's, or older than them).
        _D.provenance[("timings", "predict_s")].as_float().label("predict"),
    )
    .where(_D.account == _ACCOUNT)
    .cte("timed")
    .prefix_with("MATERIALIZED")
)


def _histogram_columns(value: ColumnElement[float], bounds: tuple[float, ...]) -> list[Any]:
    return [
        func.count(value),
        func.sum(value),
        *(func.sum(case((value <= bound, 1), else_=0)) for bound in bounds),
    ]


_TIMINGS = select(
    *_histogram_columns(_TIMED.c.latency, DECISION_LATENCY_BOUNDS),
    *_histogram_columns(_TIMED.c.predict, PREDICT_BOUNDS),
)


# How many decisions an account has and its newest candle: read from the index alone.
_DECIDED_SO_FAR = select(func.count(), func.max(_D.candle_time)).where(_D.account == _ACCOUNT)

_Timings = tuple[LatencyHistogram, LatencyHistogram]


class Overview:
    def __init__(self, sessions: Sessions) -> None:
        self._sessions = sessions
        # account -> (its decisions so far, their histograms). Decisions are only ever added:
        # while their count and newest candle stand, so do the histograms, and a scrape reads
        # two values from the index instead of every decision's provenance (measured in
        # bench/metrics_scrape.py). A race recomputes once more; it never serves stale counts.
        self._timings: dict[str, tuple[tuple[Any, ...], _Timings]] = {}

    def safety(self, now: datetime, steps: int = 10, accepted: int = 10) -> SafetyOverview:
        with self._sessions.connect() as c:
            controls = {row.control: row for row in c.execute(_CONTROLS)}
            minute, hour, day = _refusals(c, now)
            step_rows = c.execute(_STEPS, {"limit": steps}).all()
            accepted_rows = c.execute(_ACCEPTED, {"limit": accepted}).all()
        return SafetyOverview(
            flags=flags_of(controls, now),
            kill_switch=kill_switch_of(controls.get(Control.KILL_SWITCH.value)),
            breaker=control_of(controls.get(Control.CIRCUIT_BREAKER.value)),
            kill_switch_steps=tuple(SafetyEvent(*r) for r in reversed(step_rows)),
            accepted=tuple(SafetyRequest(*r) for r in accepted_rows),
            refusals_last_minute=minute,
            refusals_last_hour=hour,
            refusals_last_day=day,
        )

    def trading_counts(self, now: datetime, account: str) -> TradingCounts:
        """Grouped counts on one connection: a scrape reads aggregates, never the rows."""
        with self._sessions.connect() as c:
            controls = {row.control: row for row in c.execute(_CONTROLS)}
            by = {"account": account}
            orders = dict(c.execute(_ORDERS_BY_STATUS, by).all())
            decisions = dict(c.execute(_DECISIONS_BY_ACTION, by).all())
            denied = c.execute(_DENIED, by).scalars().all()
            fills = int(c.execute(_FILLS, by).scalar() or 0)
            positions = {s: float(q) for s, q in c.execute(_POSITIONS, by)}
            calls = c.execute(_LLM, by).all()
            latency, predict = self._timings_of(c, account)
        return TradingCounts(
            flags=flags_of(controls, now),
            kill_switch=kill_switch_of(controls.get(Control.KILL_SWITCH.value)),
            orders=orders,
            decisions=decisions,
            denials=dict(Counter(Denial.parse(t).code.value for ts in denied for t in ts)),
            fills=fills,
            positions=positions,
            llm_calls={(a, m, o): int(n) for a, m, o, n, *_ in calls},
            llm_tokens=_tokens(calls),
            llm_cost=_costs(calls),
            decision_latency=latency,
            predict_seconds=predict,
        )

    def _timings_of(self, c: Connection, account: str) -> _Timings:
        so_far = tuple(c.execute(_DECIDED_SO_FAR, {"account": account}).one())
        cached = self._timings.get(account)
        if cached is not None and cached[0] == so_far:
            return cached[1]
        fresh = _timings(c, account)
        self._timings[account] = (so_far, fresh)  # read before: never newer than `fresh`
        return fresh

    def health(self, now: datetime, account: str) -> HealthOverview:
        with self._sessions.connect() as c:
            controls = {row.control: row for row in c.execute(_CONTROLS)}
            newest = c.execute(_NEWEST_DECISION, {"account": account}).first()
        model = None if newest is None else ModelInUse(*newest)
        kill = kill_switch_of(controls.get(Control.KILL_SWITCH.value))
        return HealthOverview(flags_of(controls, now), kill, model)


def _timings(c: Connection, account: str) -> _Timings:
    """(candle close -> decided_at, the model's seconds per prediction) of `account`'s
    decisions; empty histograms when it has none."""
    row = c.execute(_TIMINGS, {"account": account}).one()
    n = len(DECISION_LATENCY_BOUNDS) + 2
    return (
        _histogram(DECISION_LATENCY_BOUNDS, row[:n]),
        _histogram(PREDICT_BOUNDS, row[n:]),
    )


def _histogram(bounds: tuple[float, ...], row: Sequence[Any]) -> LatencyHistogram:
    count, total, *cumulative = row
    return LatencyHistogram(
        bounds, tuple(int(k or 0) for k in cumulative), int(count or 0), float(total or 0)
    )


def _tokens(calls: list[Row[Any]]) -> dict[tuple[str, str, str], int]:
    out: Counter[tuple[str, str, str]] = Counter()
    for agent, model, _, _, tokens_in, tokens_out, _ in calls:
        out[(agent, model, "input")] += int(tokens_in or 0)
        out[(agent, model, "output")] += int(tokens_out or 0)
    return dict(out)


def _costs(calls: list[Row[Any]]) -> dict[tuple[str, str], float]:
    out: dict[tuple[str, str], float] = {}
    for agent, model, _, _, _, _, cost in calls:
        out[(agent, model)] = out.get((agent, model), 0.0) + float(cost or 0)
    return out


def _refusals(c: Connection, now: datetime) -> tuple[int, int, int]:
    """Last minute and hour from the 10-second totals (at most 360 rows), the last day from
    the hourly ones (25 rows; the first hour may reach a little further back)."""
    windows = {
        "minute": bucket_of(now - timedelta(minutes=1)),
        "hour": bucket_of(now - timedelta(hours=1)),
    }
    minute, hour = c.execute(_REFUSALS, windows).one()
    day = c.execute(_REFUSALS_DAY, {"day": hour_of(now - timedelta(days=1))}).scalar()
    return int(minute or 0), int(hour or 0), int(day or 0)
