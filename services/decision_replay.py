"""Replay one recorded decision bit for bit: from the stored candles, the model version it used,
the risk state it was decided on and the agents' cached answers, recompute the features, the
probability, the panel's votes, the consensus and the risk gate, and say whether the decision is
identical, or exactly what differs and why.

The decision recorded what this needs (services.decide.step.provenance). Nothing new is asked
of an LLM provider: the panel is built in strict replay mode, where a prompt the cache never
answered is an error, not a call.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import pandas as pd

from core.agents.brief import PastDecision
from core.agents.panel import Panel, PanelRequest
from core.decision import Decision, DecisionInput, agent_context, decide
from core.errors import FatalError
from core.features.build import build_features
from core.features.registry import feature_set_version
from core.orders import Order
from core.ports import Ledger, Model
from core.records import DecisionRecord
from core.risk.snapshot import state_from_json
from core.types import DecisionId, Symbol, to_decimal
from services.decide.batch import predict_at_times
from services.decide.config import DecisionConfig, config_digest


class CannotReplay(FatalError, LookupError):
    """The decision is unknown, or was recorded without what replaying it needs."""


@dataclass(frozen=True)
class ReplayResult:
    decision_id: str
    differences: list[str]  # "field: recorded X, replayed Y"; empty when identical
    causes: list[str]  # what changed since the decision that explains them
    replayed: Decision

    @property
    def identical(self) -> bool:
        return not self.differences


ModelLoader = Callable[[str, str], Model]


def replay_decision(
    ledger: Ledger,
    decision_id: str,
    load_model: ModelLoader,
    panel: Panel,
    cfg: DecisionConfig,
) -> ReplayResult:
    record = ledger.orders.decision(decision_id)
    if record is None:
        raise CannotReplay(f"no decision {decision_id!r} in the ledger")
    prov = record.provenance
    if not prov:
        raise CannotReplay(
            f"decision {decision_id} was recorded without provenance (before it was kept, or "
            "by a backtest): it cannot be replayed"
        )
    inp = _input(ledger, record, prov, load_model, cfg)
    state = state_from_json(prov["risk_state"])
    recent = [
        PastDecision(datetime.fromisoformat(d["candle_time"]), d["action"], to_decimal(d["price"]))
        for d in prov.get("recent", ())
    ]
    context = agent_context(inp, state, cfg.consensus.policy.horizon, recent)
    deliberation = panel.deliberate(
        [PanelRequest(DecisionId(decision_id), context)], record.decided_at
    )
    decision = decide(
        inp, deliberation[DecisionId(decision_id)], cfg.consensus, cfg.sizing, state, cfg.limits,
        record.decided_at,
    )  # fmt: skip
    kept = ledger.orders.get(record.client_order_id) if record.client_order_id else None
    differences = compare(record, decision, kept)
    return ReplayResult(decision_id, differences, _causes(prov, panel, cfg), decision)


def _input(
    ledger: Ledger,
    record: DecisionRecord,
    prov: Mapping[str, Any],
    load_model: ModelLoader,
    cfg: DecisionConfig,
) -> DecisionInput:
    """The decision's input recomputed: features from the stored candles it read, the
    probability and edge from the model version it used."""
    span = prov["candles"]
    t = pd.Timestamp(span["last"])
    frame = _candles(ledger, cfg, record.symbol, span["first"], span["last"])
    reference = (
        frame
        if record.symbol == cfg.reference_symbol
        else _candles(ledger, cfg, cfg.reference_symbol, span["reference_first"], span["last"])
    )
    features = build_features(frame, reference)
    if t not in features.index:
        raise CannotReplay(f"{record.symbol}: the candle at {t} is no longer in the ledger")
    model = load_model(prov["model"]["name"], prov["model"]["version"])
    p = predict_at_times(model, {record.symbol: features}, pd.DatetimeIndex([t]))[record.symbol]
    probability = float(p.iloc[0]) if len(p) else float("nan")
    row = {k: float(v) for k, v in features.loc[t].items()}
    row |= dict(record.order_book_features or {})
    close = frame.set_index("open_time")["close"].loc[t]
    return DecisionInput(
        account=record.account,
        symbol=Symbol(record.symbol),
        timeframe=record.timeframe,
        candle_time=record.candle_time,
        price=to_decimal(float(close)),
        features=row,
        model_probability=probability,
        model_name=model.name,
        model_version=model.version,
        feature_set_version=model.feature_set_version,
        model_edge=float(model.edge(p.to_numpy())[0]) if len(p) else float("nan"),
        model_tradeable=model.tradeable,
        model_quality=dict(model.quality),
    )


def _candles(
    ledger: Ledger, cfg: DecisionConfig, symbol: str, first: str, last: str
) -> pd.DataFrame:
    frame = ledger.candles.load(
        cfg.exchange, symbol, cfg.timeframe, until=datetime.fromisoformat(last)
    )
    kept = frame[frame["open_time"] >= pd.Timestamp(first)].reset_index(drop=True)
    if kept.empty or kept["open_time"].iloc[0] != pd.Timestamp(first):
        raise CannotReplay(f"{symbol}: the candles from {first} are no longer in the ledger")
    return kept


def compare(record: DecisionRecord, replayed: Decision, order: Order | None) -> list[str]:
    """Every recorded field the replay recomputed, and the order's side and quantity, side by
    side where they differ."""
    rows = _as_recorded(record) | {"order": _order(order)}
    again = _as_recorded(DecisionRecord.of(replayed)) | {"order": _order(replayed.order)}
    return [
        f"{k}: recorded {rows[k]!r}, replayed {again[k]!r}" for k in rows if rows[k] != again[k]
    ]


def _order(order: Order | None) -> tuple[str, Decimal] | None:
    return None if order is None else (order.side.value, order.quantity)


def _as_recorded(record: DecisionRecord) -> dict[str, object]:
    return {
        "probability": record.probability,
        "model_version": record.model_version,
        "feature_set_version": record.feature_set_version,
        "price": record.price,
        "votes": [
            (v.agent, v.action.value, v.confidence, v.reason, v.abstained) for v in record.votes
        ],
        "action": record.action.value,
        "score": record.score,
        "consensus_reason": record.consensus_reason,
        "contributions": dict(record.contributions),
        "regime": record.regime,
        "risk_approved": record.risk_approved,
        "denials": [str(d) for d in record.denials],
        "client_order_id": record.client_order_id,
    }


def _causes(prov: Mapping[str, Any], panel: Panel, cfg: DecisionConfig) -> list[str]:
    """What changed since the decision that can make a replay differ."""
    causes = []
    if prov.get("feature_set_version") != feature_set_version():
        causes.append(
            f"the feature code changed: decided with {prov.get('feature_set_version')}, "
            f"now {feature_set_version()}"
        )
    if prov.get("config") not in (None, config_digest(cfg)):
        causes.append(
            "the decision settings (consensus, sizing, risk limits) changed since: "
            f"{prov.get('config')} then, {config_digest(cfg)} now"
        )
    if prov.get("panel") != panel.name:
        causes.append(f"the agents differ: {prov.get('panel')} then, {panel.name} now")
    return causes
