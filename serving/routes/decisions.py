"""The account's decisions, a page at a time with their votes and what their LLM calls came
to (or the calls themselves, `?calls=true`), and one decision with its LLM calls: what was
seen, voted, decided and why, and every call behind the votes with its prompt, answer, tokens,
latency and cost (services/decisions.py reads it).

Reads: a token with scope read. Decision ids hold slashes and colons
("paper:BTC/USDT:1h:1706950800"): the route takes the rest of the path, encoded or not.
Errors: 404 an unknown id; 422 a bad filter or cursor; 503 a ledger that does not answer (the
app's handler, as on every route). Decimals are strings, times ISO 8601 with their offset, as
elsewhere in the API.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel

from core.agents.calls import AgentCall, AgentUsage, CallOutcome
from core.browse import DecisionQuery
from core.records import DecisionRecord
from core.types import Action
from services.decisions import decision_with_calls
from serving.auth import ReadToken
from serving.deps import api_of
from serving.json import json_response
from serving.listing import (
    AUTH_RESPONSES,
    DenialOut,
    ErrorOut,
    Limit,
    PageCursor,
    Since,
    SymbolFilter,
    decimal_text,
    listing,
)

router = APIRouter(prefix="/decisions", tags=["decisions"])


class VoteOut(BaseModel):
    agent: str
    action: Action
    confidence: float
    reason: str
    horizon: int
    reasons: list[str]
    risk_flags: list[str]
    abstained: str


class DecisionOut(BaseModel):
    decision_id: str
    account: str
    symbol: str
    timeframe: str
    candle_time: str
    price: str
    feature_set_version: str
    model_name: str
    model_version: str
    probability: float
    votes: list[VoteOut]
    order_book_features: dict[str, float] | None
    action: Action
    score: float
    consensus_reason: str
    risk_approved: bool | None
    denials: list[DenialOut]
    client_order_id: str | None
    decided_at: str
    contributions: dict[str, float]
    regime: str
    provenance: dict[str, Any]


class CallOut(BaseModel):
    agent: str
    round: int
    model: str
    endpoint: str
    template: str
    template_version: str
    prompt_hash: str
    prompt: str
    response: str
    vote: dict[str, Any] | None
    outcome: CallOutcome
    error: str
    tokens_in: int
    tokens_out: int
    latency_ms: float
    cost: str
    finish_reason: str
    called_at: str


class TotalsOut(BaseModel):
    calls: int
    abstentions: int
    tokens_in: int
    tokens_out: int
    cost: str


class DecisionWithCalls(BaseModel):
    decision: DecisionOut
    calls: list[CallOut]
    totals: TotalsOut


class DecisionEntryOut(BaseModel):
    decision: DecisionOut
    totals: TotalsOut
    calls: list[CallOut] | None  # null unless ?calls=true


class DecisionsPage(BaseModel):
    decisions: list[DecisionEntryOut]
    next_cursor: str | None


@router.get("", responses={200: {"model": DecisionsPage}, **AUTH_RESPONSES})
async def decisions(
    request: Request,
    _: ReadToken,
    symbol: SymbolFilter = None,
    action: Annotated[Action | None, Query(description="Only decisions to do this.")] = None,
    since: Since = None,
    limit: Limit = 50,
    cursor: PageCursor = None,
    calls: Annotated[bool, Query(description="Every LLM call in full, not only totals.")] = False,
) -> Response:
    """Newest candle first; each with its votes and what its LLM calls came to."""
    api = api_of(request)
    account = api.settings.account
    query = DecisionQuery(symbol, action, since, limit, cursor, calls)

    def build() -> dict[str, Any]:
        page = api.ledger.browse.decisions(account, query)
        return {
            "decisions": [
                {
                    "decision": decision_json(e.record),
                    "totals": totals_json(e.usage),
                    "calls": [call_json(c) for c in e.calls] if calls else None,
                }
                for e in page.items
            ],
            "next_cursor": page.next_cursor,
        }

    return await listing(request, ("decisions", account, query), build)


@router.get(
    "/{decision_id:path}",
    responses={
        200: {"model": DecisionWithCalls},
        404: {"model": ErrorOut, "description": "No decision with this id."},
        **AUTH_RESPONSES,
    },
)
async def decision(request: Request, decision_id: str, _: ReadToken) -> Response:
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
