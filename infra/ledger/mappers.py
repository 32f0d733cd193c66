"""Rows to domain objects and back: the only place that knows both."""

from __future__ import annotations

from dataclasses import asdict, fields
from datetime import datetime
from decimal import Decimal
from typing import Any

from core.agents.base import Vote
from core.agents.calls import AgentCall, CallOutcome
from core.consensus import Weighing, shares_of
from core.decision import Decision
from core.features.book_specs import BOOK_FEATURE_NAMES
from core.holds import HoldColumns, HoldRows, HoldSettings
from core.orders import Fill, Order, OrderOrigin, OrderStatus, OrderType
from core.records import ControlState, DecisionRecord, KillSwitchState
from core.risk.limits import Denial
from core.types import Action, ClientOrderId, DecisionId, Side, Symbol
from infra.ledger.driver_insert import Same
from infra.ledger.json_text import JsonText, dumps, pieces_around, text_of
from infra.ledger.models import DecisionRow, OrderRow


def order_row(order: Order, account: str, broker: str) -> OrderRow:
    return OrderRow(**order_values(order, account, broker))


def order_values(
    order: Order,
    account: str,
    broker: str,
    updated_at: datetime | None = None,
    submit_attempts: int = 0,
    error: str | None = None,
) -> dict[str, Any]:
    """An order's column values (a bulk insert takes these, not ORM objects)."""
    return {
        "client_order_id": order.client_order_id,
        "decision_id": order.decision_id,
        "account": account,
        "broker": broker,
        "symbol": order.symbol,
        "side": order.side.value,
        "origin": order.origin.value,
        "order_type": order.order_type.value,
        "quantity": order.quantity,
        "limit_price": order.limit_price,
        "filled_quantity": order.filled_quantity,
        "filled_cost": order.filled_cost,
        "status": order.status.value,
        "market_time": order.market_time,
        "created_at": order.created_at,
        "updated_at": updated_at or order.created_at,
        "submit_attempts": submit_attempts,
        "error": error,
    }


def order_of(row: Any) -> Order:
    """An order from its orders row (an ORM object or a plain row)."""
    return Order(
        client_order_id=ClientOrderId(row.client_order_id),
        decision_id=None if row.decision_id is None else DecisionId(row.decision_id),
        symbol=Symbol(row.symbol),
        side=Side(row.side),
        quantity=row.quantity,
        created_at=row.created_at,
        market_time=row.market_time,
        order_type=OrderType(row.order_type),
        status=OrderStatus(row.status),
        limit_price=row.limit_price,
        filled_quantity=row.filled_quantity,
        filled_cost=row.filled_cost,
        origin=OrderOrigin(row.origin),
    )


def decision_row(decision: Decision) -> DecisionRow:
    return DecisionRow(**decision_values(decision))


DECISION_COLUMNS = (
    "decision_id", "account", "symbol", "timeframe", "candle_time", "price",
    "feature_set_version", "model_name", "model_version", "probability", "votes",
    "order_book_features", "action", "score", "consensus_reason", "risk_approved",
    "risk_reasons", "client_order_id", "decided_at", "contributions", "regime", "provenance",
)  # fmt: skip


def decision_tuple(decision: Decision) -> tuple[Any, ...]:
    """A decision's column values in `DECISION_COLUMNS` order (a backtest streams these)."""
    inp, verdict, order, consensus = (
        decision.input, decision.verdict, decision.order, decision.consensus
    )  # fmt: skip
    features = inp.features
    return (
        decision.decision_id,
        inp.account,
        inp.symbol,
        inp.timeframe,
        inp.candle_time,
        inp.price,
        inp.feature_set_version,
        inp.model_name,
        inp.model_version,
        float(inp.model_probability),
        [v.as_json(full=False) for v in decision.votes],
        {k: float(features[k]) for k in BOOK_FEATURE_NAMES if k in features} or None,
        consensus.action.value,
        consensus.score,
        consensus.reason,
        None if verdict is None else verdict.approved,
        [] if verdict is None else [str(d) for d in verdict.denials],
        None if order is None else order.client_order_id,
        decision.decided_at,
        dict(consensus.contributions) or None,
        consensus.regime or None,
        dict(decision.provenance) or None,
    )


def hold_columns(
    holds: HoldColumns, rows: HoldRows, settings: HoldSettings
) -> dict[str, list[Any] | Same]:
    """The column values of holds read apart (core.holds.HoldColumns; not their `decided`), as
    `decision_tuple` gives them for the decisions `decide` makes of them: HOLDs, no order
    proposed (a test holds the two equal)."""
    return {
        "decision_id": holds.decision_id,
        "account": Same(rows.account),
        "symbol": holds.symbol,
        "timeframe": Same(rows.timeframe),
        "candle_time": holds.candle_time,
        "price": holds.price,
        "feature_set_version": Same(settings.feature_set_version),
        "model_name": Same(settings.model_name),
        "model_version": Same(settings.model_version),
        "probability": holds.probability,
        "votes": _votes_texts(holds),
        "order_book_features": Same(None),  # an order book seen: decided whole
        "action": Same(_HOLD),
        "score": holds.score,
        "consensus_reason": holds.reason,
        "risk_approved": Same(None),
        "risk_reasons": Same([]),
        "client_order_id": Same(None),
        "decided_at": holds.decided_at,
        "contributions": _contributions_texts(holds),
        "regime": [regime or None for regime in holds.regime],
        "provenance": Same(None),
    }


_HOLD = Action.HOLD.value


def _votes_texts(holds: HoldColumns) -> list[JsonText]:
    """The JSON text of each hold's votes, as `decision_tuple`'s list of `Vote.as_json` is
    written: its case's text with the hold's `said` and `seen` around each vote's trend word."""
    said, seen = holds.said, holds.seen
    if not (_as_is("".join(said)) and _as_is("".join(seen))):  # JSON escapes some of them
        return [JsonText(dumps(_votes_json(holds, i))) for i in range(len(said))]
    texts = [_votes_template(votes) for votes in holds.vote_cases]
    width = len(holds.vote_cases[0]) if holds.vote_cases else 0
    return [
        JsonText(texts[c] % ((s, e) * width))
        for c, s, e in zip(holds.case, said, seen, strict=True)
    ]


def _as_is(text: str) -> bool:
    """Whether JSON writes `text` inside a string as it is (nothing to escape)."""
    return text.isascii() and text.isprintable() and '"' not in text and "\\" not in text


def _votes_template(votes: tuple[Vote, ...]) -> str:
    """`votes`' JSON text, each reason a %-template's `"%s<trend word>%s"` (said, seen)."""
    holes = [f"\x00reason {j}\x00" for j in range(len(votes))]  # in no reason: one line of text
    values = [
        v.as_json(full=False) | {"reason": hole} for v, hole in zip(votes, holes, strict=True)
    ]
    pieces = [piece.replace("%", "%%") for piece in pieces_around(values, holes)]
    words = [text_of(v.reason)[1:-1].replace("%", "%%") for v in votes]
    return pieces[0] + "".join(
        f'"%s{word}%s"{piece}' for word, piece in zip(words, pieces[1:], strict=True)
    )


def _votes_json(holds: HoldColumns, i: int) -> list[dict[str, object]]:
    reasons = holds.vote_reasons(i)
    votes = holds.vote_cases[holds.case[i]]
    return [v.as_json(full=False) | {"reason": r} for v, r in zip(votes, reasons, strict=True)]


def _contributions_texts(holds: HoldColumns) -> list[JsonText]:
    """The JSON text of each hold's contributions: its weighing's text around the model's
    share."""
    around = [_contributions_pieces(w) for w in holds.weighings]
    return [
        JsonText(_float_text(share).join(around[w]))
        for w, share in zip(holds.weighed, holds.model_share, strict=True)
    ]


def _contributions_pieces(weights: Weighing) -> list[str]:
    """The JSON text of `shares_of` this weighing, cut where the model's share is written
    (first: core.consensus.weighing names the model first)."""
    hole = "\x00model\x00"
    values: dict[str, object] = dict(shares_of(0.0, weights))
    values[weights.names[0]] = hole
    return pieces_around(values, [hole])


def _float_text(x: float) -> str:
    """A float as JSON writes it (its repr; NaN and the infinities as json.dumps names them)."""
    return repr(x) if x - x == 0.0 else dumps(x)


def decision_values(decision: Decision) -> dict[str, Any]:
    """A decision's column values (a bulk insert takes these, not ORM objects)."""
    return dict(zip(DECISION_COLUMNS, decision_tuple(decision), strict=True))


def call_values(decision_id: str, call: AgentCall) -> dict[str, Any]:
    return {"decision_id": decision_id, **asdict(call), "outcome": call.outcome.value}


def call_of(row: Any) -> AgentCall:
    values = {f.name: getattr(row, f.name) for f in fields(AgentCall)}
    return AgentCall(**values | {"outcome": CallOutcome(row.outcome)})


def fill_values(account: str, fill: Fill, realised: Decimal) -> dict[str, Any]:
    return {
        "fill_id": fill.fill_id,
        "client_order_id": fill.client_order_id,
        "account": account,
        "symbol": fill.symbol,
        "side": fill.side.value,
        "quantity": fill.quantity,
        "price": fill.price,
        "fee": fill.fee,
        "realised_pnl": realised,
        "filled_at": fill.filled_at,
        "fee_in_base": fill.fee_in_base,
    }


def decision_of(row: DecisionRow) -> DecisionRecord:
    return DecisionRecord(
        decision_id=DecisionId(row.decision_id),
        account=row.account,
        symbol=Symbol(row.symbol),
        timeframe=row.timeframe,
        candle_time=row.candle_time,
        price=row.price,
        feature_set_version=row.feature_set_version,
        model_name=row.model_name,
        model_version=row.model_version,
        probability=row.probability,
        votes=tuple(Vote.from_json(v) for v in row.votes),
        order_book_features=row.order_book_features,
        action=Action(row.action),
        score=row.score,
        consensus_reason=row.consensus_reason,
        risk_approved=row.risk_approved,
        denials=tuple(Denial.parse(text) for text in row.risk_reasons),
        client_order_id=None if row.client_order_id is None else ClientOrderId(row.client_order_id),
        decided_at=row.decided_at,
        contributions=row.contributions or {},
        regime=row.regime or "",
        provenance=row.provenance or {},
    )


def kill_switch_of(row: Any | None) -> KillSwitchState:
    """The kill switch from its safety_state row (an ORM object or a plain row); off if none."""
    if row is None:
        return KillSwitchState(False, None, None)
    return KillSwitchState(bool(row.active), row.reason, row.changed_at)


def control_of(row: Any | None) -> ControlState | None:
    """A control from its safety_state row (an ORM object or a plain row); None if never set."""
    if row is None:
        return None
    return ControlState(row.control, bool(row.active), row.reason, row.changed_at, row.until)
