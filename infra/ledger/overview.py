"""Read models for the API: the safety status and health, each read on one connection with a
handful of indexed queries built once at import, so a busy dashboard costs the database (and
the Python in front of it) little."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row, bindparam, case, func, select

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


class Overview:
    def __init__(self, sessions: Sessions) -> None:
        self._sessions = sessions

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
        )

    def health(self, now: datetime, account: str) -> HealthOverview:
        with self._sessions.connect() as c:
            controls = {row.control: row for row in c.execute(_CONTROLS)}
            newest = c.execute(_NEWEST_DECISION, {"account": account}).first()
        model = None if newest is None else ModelInUse(*newest)
        kill = kill_switch_of(controls.get(Control.KILL_SWITCH.value))
        return HealthOverview(flags_of(controls, now), kill, model)


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
