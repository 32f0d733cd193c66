"""One decision with its LLM calls: what was seen, voted, decided and why, and every call behind
the votes with its prompt, answer, tokens, latency and cost (services/decisions.py reads it).

A read, so unauthenticated like /health. Decision ids hold slashes and colons
("paper:BTC/USDT:1h:1706950800"): the route takes the rest of the path, encoded or not.
Errors: 404 an unknown id; 503 a ledger that does not answer (the app's handler, as on every
route). Decimals are strings, times ISO 8601 with their offset, as elsewhere in the API.
"""

from __future__ import annotations

from dataclasses import asdict
from decimal import Decimal
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from core.agents.calls import AgentCall, AgentUsage
from core.records import DecisionRecord
from services.decisions import decision_with_calls
from serving.deps import api_of
from serving.json import json_response

router = APIRouter(prefix="/decisions", tags=["decisions"])


@router.get("/{decision_id:path}")
async def decision(request: Request, decision_id: str) -> Response:
    api = api_of(request)
    view = await api.read(decision_with_calls, api.ledger, decision_id)
    if view is None:
        return json_response(
            {
                "detail": f"no decision with id {decision_id!r} "
                "(ids read account:symbol:timeframe:candle open in Unix seconds, "
                "e.g. paper:BTC/USDT:1h:1706950800)"
            },
            404,
        )
    return json_response({
        "decision": decision_json(view.decision),
        "calls": [call_json(c) for c in view.calls],
        "totals": totals_json(view.totals),
    })  # fmt: skip


def decision_json(d: DecisionRecord) -> dict[str, Any]:
    return {
        "decision_id": d.decision_id,
        "account": d.account,
        "symbol": d.symbol,
        "timeframe": d.timeframe,
        "candle_time": d.candle_time.isoformat(),
        "price": decimal_text(d.price),
        "feature_set_version": d.feature_set_version,
        "model_name": d.model_name,
        "model_version": d.model_version,
        "probability": d.probability,
        "votes": [v.as_json() for v in d.votes],
        "order_book_features": None if d.order_book_features is None else dict(
            d.order_book_features
        ),
        "action": d.action.value,
        "score": d.score,
        "consensus_reason": d.consensus_reason,
        "risk_approved": d.risk_approved,
        "denials": [{"code": x.code.value, "detail": x.detail} for x in d.denials],
        "client_order_id": d.client_order_id,
        "decided_at": d.decided_at.isoformat(),
        "contributions": dict(d.contributions),
        "regime": d.regime,
        "provenance": dict(d.provenance),
    }  # fmt: skip


def call_json(c: AgentCall) -> dict[str, Any]:
    return asdict(c) | {
        "outcome": c.outcome.value,
        "cost": decimal_text(c.cost),
        "called_at": c.called_at.isoformat(),
    }


def totals_json(t: AgentUsage) -> dict[str, Any]:
    return {
        "calls": t.calls,
        "abstentions": t.abstentions,
        "tokens_in": t.tokens_in,
        "tokens_out": t.tokens_out,
        "cost": decimal_text(t.cost),
    }


def decimal_text(value: Decimal) -> str:
    """Plain notation without trailing zeros: PostgreSQL hands back a NUMERIC column's full
    scale ("0.000150000000000000"), SQLite the value as stored; both read "0.00015" here."""
    return f"{value.normalize():f}"
