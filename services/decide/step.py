"""Decide at one candle time: pure. The same step serves the live loop and the replay, so a
backtest runs exactly the decision code that trades."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal

import pandas as pd

from core.agents.base import Agent
from core.candles.timeframe import timeframe_delta
from core.decision import Decision, DecisionInput, decide
from core.orders import decision_id_for
from core.risk.limits import RiskState
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
    agents: Sequence[Agent],
    already: Collection[DecisionId] = frozenset(),
) -> Step:
    """Every symbol at the candle opening at `t`, decided at `now` on `state`. An approved
    order is counted as open before the next symbol is decided, as the ledger would."""
    close = t.to_pydatetime() + timeframe_delta(cfg.timeframe)
    state = replace(state, candle_age=now - close)
    prices = batch.prices_at(t)
    decisions: list[Decision] = []
    skipped = 0
    opened = t.to_pydatetime()
    for symbol in cfg.symbols:
        # A backtest has nothing decided before it: the id is built only when it may match.
        known = already and batch.has(symbol, t)
        if known and decision_id_for(cfg.account, symbol, cfg.timeframe, opened) in already:
            skipped += 1
            continue
        features = batch.features_at(symbol, t)
        if features is None:
            continue
        decision = decide(
            _input(batch, cfg, Symbol(symbol), t, prices[Symbol(symbol)], features),
            agents,
            cfg.consensus,
            cfg.sizing,
            state,
            cfg.limits,
            now,
        )
        decisions.append(decision)
        if decision.order is not None:
            order = decision.order
            state = state.with_order(order.side, order.symbol, order.quantity)
    return Step(decisions, skipped, state)


def _input(
    batch: DecisionBatch,
    cfg: DecisionConfig,
    symbol: Symbol,
    t: pd.Timestamp,
    price: Decimal,
    features: dict[str, float],
) -> DecisionInput:
    return DecisionInput(
        account=cfg.account,
        symbol=symbol,
        timeframe=cfg.timeframe,
        candle_time=t.to_pydatetime(),
        price=price,
        features=features,
        model_probability=batch.probability(symbol, t),
        model_edge=batch.edge(symbol, t),
        model_tradeable=batch.tradeable,
        model_name=batch.model_name,
        model_version=batch.model_version,
        feature_set_version=batch.feature_set_version,
    )
