"""Decide at one candle time: pure but for the panel's calls. The same step serves the live
loop and the replay, so a backtest runs exactly the decision code that trades."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal

import pandas as pd

from core.agents.brief import PastDecision
from core.agents.panel import Panel, PanelRequest
from core.candles.timeframe import timeframe_delta
from core.decision import Decision, DecisionInput, agent_context, decide
from core.orders import decision_id_for
from core.risk.limits import RiskState
from core.risk.snapshot import state_to_json
from core.types import DecisionId, Symbol
from services.decide.batch import DecisionBatch
from services.decide.config import DecisionConfig


@dataclass(frozen=True)
class Step:
    decisions: list[Decision]  # in symbol order; an approved one carries its order
    skipped: int  # decided by an earlier run: never decided twice
    state: RiskState  # the risk state once the approved orders are open


def decide_at(
    batch: DecisionBatch,
    t: pd.Timestamp,
    state: RiskState,
    now: datetime,
    cfg: DecisionConfig,
    panel: Panel,
    already: Collection[DecisionId] = frozenset(),
    recent: Mapping[str, Sequence[PastDecision]] | None = None,
    timer: Callable[[], float] | None = None,
    holds: list[tuple[int, int]] | None = None,
) -> Step:
    """Every symbol at the candle opening at `t`, decided at `now` on `state`. The panel
    deliberates on every symbol at once; then an approved order is counted as open before the
    next symbol is decided, as the ledger would. With a `timer` (seconds: the live loop's) and
    provenance, each decision keeps what it cost; without, no clock is read and the same
    inputs give the same decisions. With `holds`, a flat symbol whose policy holds is not
    decided here: its (symbol index, row) is appended there, for core.holds to decide."""
    close = t.to_pydatetime() + timeframe_delta(cfg.timeframe)
    state = replace(state, candle_age=now - close)
    inputs, skipped = _inputs(batch, t, cfg, already, _HoldsApart(state, cfg, batch, holds))
    horizon = cfg.consensus.policy.horizon
    requests = [
        PanelRequest(did, agent_context(inp, state, horizon, (recent or {}).get(inp.symbol, ())))
        for did, inp in inputs
    ]
    timer = timer if cfg.record_provenance else None
    started = timer() if timer else 0.0
    deliberations = panel.deliberate(requests, now) if requests else {}
    # The panel deliberates on every symbol in one go: each decision bears an equal share.
    shared = (timer() - started) / len(requests) if timer and requests else 0.0
    decisions: list[Decision] = []
    for (did, inp), request in zip(inputs, requests, strict=True):
        began = timer() if timer else 0.0
        decision = decide(
            inp, deliberations[did], cfg.consensus, cfg.sizing, state, cfg.limits, now, did
        )
        if cfg.record_provenance:
            spent = timings(batch, shared + timer() - began) if timer else None
            facts = provenance(batch, cfg, decision, state, request, panel, spent)
            decision = replace(decision, provenance=facts)
        decisions.append(decision)
        if decision.order is not None:
            order = decision.order
            state = state.with_order(order.side, order.symbol, order.quantity)
    return Step(decisions, skipped, state)


@dataclass(frozen=True)
class _HoldsApart:
    """Sets a flat symbol's hold aside (core.holds) instead of deciding it, when asked to."""

    state: RiskState
    cfg: DecisionConfig
    batch: DecisionBatch
    marks: list[tuple[int, int]] | None

    def take(self, k: int, symbol: str, t: pd.Timestamp) -> bool:
        if self.marks is None or self.state.committed(symbol) > 0:
            return False
        at = self.batch.flat_hold_row(symbol, t, self.cfg.consensus)
        if at is None:
            return False
        self.marks.append((k, at))
        return True


def _inputs(
    batch: DecisionBatch,
    t: pd.Timestamp,
    cfg: DecisionConfig,
    already: Collection[DecisionId],
    holds: _HoldsApart,
) -> tuple[list[tuple[DecisionId, DecisionInput]], int]:
    prices = batch.prices_at(t)
    opened = t.to_pydatetime()
    inputs, skipped = [], 0
    for k, symbol in enumerate(cfg.symbols):
        # A backtest has nothing decided before it: the id is built only when it may match.
        if (
            already
            and batch.has(symbol, t)
            and decision_id_for(cfg.account, symbol, cfg.timeframe, opened) in already
        ):
            skipped += 1
            continue
        if holds.take(k, symbol, t):
            continue
        read = batch.read_at(symbol, t)
        if read is None:
            continue
        did = decision_id_for(cfg.account, symbol, cfg.timeframe, opened)
        price = prices[Symbol(symbol)]
        inputs.append((did, _input(batch, cfg, Symbol(symbol), opened, price, *read)))
    return inputs, skipped


def timings(batch: DecisionBatch, decide_s: float) -> dict[str, float]:
    """What a decision cost, in seconds: `predict_s` its share of the batch's model call (the
    call's time over the `predict_rows` it predicted), `decide_s` its share of the panel's
    deliberation plus its own consensus and risk gate. Shares, so that summed over decisions
    they are the time spent. A batch whose call was not timed gives no `predict_s`."""
    out = {"decide_s": decide_s}
    if batch.predictions:
        out["predict_s"] = batch.predict_seconds / batch.predictions
        out["predict_rows"] = batch.predictions
    return out


def provenance(
    batch: DecisionBatch,
    cfg: DecisionConfig,
    decision: Decision,
    state: RiskState,
    request: PanelRequest,
    panel: Panel,
    spent: Mapping[str, float] | None = None,
) -> dict[str, object]:
    """What replaying the decision needs: the candles its features read, the model version, the
    risk state it was decided on, the decisions its brief cited, the panel, the settings'
    digest and the agents' cache keys; and, when timed, what deciding it cost (`timings`: never
    compared by a replay, which cannot take the same time twice)."""
    inp = decision.input
    first = batch.candles[inp.symbol].index[0]
    reference = batch.candles[cfg.reference_symbol].index[0]
    brief = request.context.brief
    return {
        "candles": {
            "first": first.isoformat(),
            "last": inp.candle_time.isoformat(),
            "reference_first": reference.isoformat(),
        },
        "feature_set_version": inp.feature_set_version,
        "model": {"name": inp.model_name, "version": inp.model_version},
        "risk_state": state_to_json(state),
        "recent": [
            {"candle_time": d.candle_time.isoformat(), "action": d.action, "price": str(d.price)}
            for _, d in (brief.recent if brief is not None else ())
        ],
        "panel": panel.name,
        "panel_settings": dict(panel.settings),
        "config": cfg.digest,
        "llm": [[c.agent, c.round, c.model, c.prompt_hash] for c in decision.calls],
    } | ({} if spent is None else {"timings": dict(spent)})


def _input(
    batch: DecisionBatch,
    cfg: DecisionConfig,
    symbol: Symbol,
    opened: datetime,
    price: Decimal,
    features: Mapping[str, float],
    probability: float,
    edge: float,
) -> DecisionInput:
    return DecisionInput(
        account=cfg.account,
        symbol=symbol,
        timeframe=cfg.timeframe,
        candle_time=opened,
        price=price,
        features=features,
        model_probability=probability,
        model_edge=edge,
        model_tradeable=batch.tradeable,
        model_quality=batch.quality,
        model_name=batch.model_name,
        model_version=batch.model_version,
        feature_set_version=batch.feature_set_version,
    )
