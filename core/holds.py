"""Holds in bulk: the decisions of flat symbols whose policy holds, most of a backtest's.

A symbol that holds nothing (no position, no buy working) and whose model's edge does not
clear the policy's entry bar proposes no order. Neither the risk state nor the risk gate has a
say then: its decision (the agents' votes, the consensus' HOLD, or NO_TRADE when the agents
could not vote) depends on the candle alone. A replay sets these candles aside as it goes
(`HoldRows`: a few columns per candle) and `HoldDecider` decides them later with the very
`decide` every decision goes through, on a flat account. Where that runs is the recorder's
choice: a backtest's runs it beside the replay, on the other core (infra.ledger.hold_writer).

Only for a panel whose votes read the candle alone (`candle_only`: the offline rule panel). An
LLM panel reads a brief of the account and of the recent decisions, and deliberates on the
symbols of a candle time together.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import NamedTuple

import numpy as np

from core.agents.base import InvalidVote, Vote
from core.agents.brief import regime_of
from core.agents.panel import Panel, PanelRequest, RulePanel
from core.agents.rules import BearAgent, BullAgent, bear_view, bull_view
from core.candles.timeframe import timeframe_delta
from core.consensus import (
    ConsensusConfig,
    about_of,
    contributions,
    hold_reason,
    model_score_of,
)
from core.decision import Decision, DecisionInput, Sizing, agent_context, decide
from core.errors import FatalError
from core.features.row import FeatureRow
from core.models.policy import FLAT, step
from core.orders import decision_id_for
from core.risk.limits import RiskLimits, RiskState
from core.types import Action, DecisionId, Symbol, to_decimal

# The state a hold is decided on: holding nothing is all the consensus reads of it.
_FLAT_ACCOUNT = RiskState(cash=Decimal(0), positions={}, prices={})


class NotAHold(FatalError, AssertionError):
    """A candle set aside as a hold proposed an order: it was chosen wrongly."""


def candle_only(panel: Panel) -> bool:
    """Whether `panel`'s votes read the candle alone, so its holds can be decided apart."""
    return isinstance(panel, RulePanel)


def holds_when_flat(edge: float, tradeable: bool, consensus: ConsensusConfig) -> bool:
    """The policy's answer for a flat symbol is HOLD (the very `step` decide() asks)."""
    return step(FLAT, edge, consensus.policy, tradeable)[0] is _HOLD


_HOLD = Action.HOLD


@dataclass(frozen=True)
class HoldSettings:
    """What every hold of a run shares: the run's model and the decision settings."""

    model_name: str
    model_version: str
    feature_set_version: str
    tradeable: bool
    quality: Mapping[str, float]
    consensus: ConsensusConfig
    sizing: Sizing
    limits: RiskLimits


@dataclass(frozen=True)
class HoldRows:
    """Candles set aside as holds, as columns (plain arrays: cheap to hand to another process).
    Row i is `symbols[symbol[i]]` at the candle opening at `opened[i]` (epoch seconds)."""

    account: str
    timeframe: str
    symbols: tuple[str, ...]
    symbol: np.ndarray  # int, an index into `symbols`
    opened: np.ndarray  # int64 epoch seconds
    close: np.ndarray  # float64: the candle's close, the price decided on
    probability: np.ndarray  # float64
    edge: np.ndarray  # float64
    index: Mapping[str, int]  # feature name -> column of `features`
    features: np.ndarray  # float64, one row per hold
    books: Mapping[int, Mapping[str, float]]  # row -> order-book features, where one was seen

    def __len__(self) -> int:
        return len(self.opened)

    def take(self, keep: np.ndarray) -> HoldRows:
        """The rows where `keep` is True, in order."""
        at = np.flatnonzero(keep)
        renumber = {int(old): new for new, old in enumerate(at)}
        return replace(
            self,
            symbol=self.symbol[at],
            opened=self.opened[at],
            close=self.close[at],
            probability=self.probability[at],
            edge=self.edge[at],
            features=self.features[at],
            books={renumber[i]: b for i, b in self.books.items() if i in renumber},
        )


class HoldRecord(NamedTuple):
    """A hold's decision as its record holds it (core.holds.HoldDecider.records)."""

    decision_id: DecisionId
    symbol: Symbol
    candle_time: datetime
    price: Decimal
    probability: float
    votes: tuple[Vote, ...]
    score: float
    reason: str
    contributions: dict[str, float]
    regime: str
    decided_at: datetime
    features: FeatureRow  # the book features of the record are read from it


@dataclass(frozen=True)
class HoldDecider:
    """Decides holds, one at a time (a chunk's worth of decision objects alive at once would
    keep the garbage collector walking them), in order.

    `decisions` runs `decide` itself on a flat account at the candle's close. `records` gives
    the same decisions as the values their records hold, from the functions `decide` calls for
    a flat hold of the Bull and Bear rule agents (their views, the regime, the consensus'
    shares, score and reason) without the objects around them: a backtest records hundreds of
    thousands of holds, and those objects were most of their cost. A test holds the two
    equal. With other agents, `records` gives nothing: ask `decisions`."""

    settings: HoldSettings
    panel: Panel

    def __post_init__(self) -> None:
        if not candle_only(self.panel):
            raise NotAHold(f"the {self.panel.name} panel does not vote on the candle alone")

    @property
    def plain(self) -> bool:
        """Whether `records` can give these holds: Bull and Bear rule agents only."""
        agents = getattr(self.panel, "agents", ())
        return bool(agents) and all(type(a) in _VIEWS for a in agents)

    def decisions(self, rows: HoldRows) -> Iterator[Decision]:
        settings, step_ = self.settings, timeframe_delta(rows.timeframe)
        horizon = settings.consensus.policy.horizon
        for i in range(len(rows)):
            inp = _input(rows, i, settings)
            did = decision_id_for(rows.account, inp.symbol, inp.timeframe, inp.candle_time)
            now = inp.candle_time + step_
            request = PanelRequest(did, agent_context(inp, _FLAT_ACCOUNT, horizon))
            deliberation = self.panel.deliberate((request,), now)[did]
            decision = decide(
                inp, deliberation, settings.consensus, settings.sizing, _FLAT_ACCOUNT,
                settings.limits, now, did,
            )  # fmt: skip
            if decision.proposed is not None:
                raise NotAHold(f"{did} proposed {decision.consensus.action.value}: not a hold")
            yield decision

    def records(self, rows: HoldRows) -> Iterator[HoldRecord | Decision]:
        """A record per hold; a row whose agents could not vote (a feature missing) comes as
        its Decision instead, from `decisions` (its agents abstain: NO_TRADE)."""
        if not self.plain:
            raise NotAHold(f"the agents of the {self.panel.name} panel are not Bull and Bear")
        consensus, step_ = self.settings.consensus, timeframe_delta(rows.timeframe)
        tradeable = self.settings.tradeable or not consensus.require_significance
        agents = [(a.name, _VIEWS[type(a)], a.min_confidence) for a in self.panel.agents]  # type: ignore[attr-defined]
        symbols = [Symbol(s) for s in rows.symbols]
        columns = zip(
            rows.symbol.tolist(), rows.opened.tolist(), rows.close.tolist(),
            rows.probability.tolist(), rows.edge.tolist(), strict=True,
        )  # fmt: skip
        for i, (k, opened, close, p, edge) in enumerate(columns):
            if not holds_when_flat(edge, tradeable, consensus):
                raise NotAHold(f"{symbols[k]} at {opened}: the policy enters, not a hold")
            f = FeatureRow(rows.index, rows.features, i, rows.books.get(i))
            try:
                votes = tuple(Vote(name, *view(f, p, least)) for name, view, least in agents)
            except (InvalidVote, KeyError, ValueError):
                yield from self.decisions(rows.take(np.arange(len(rows)) == i))
                continue
            regime = regime_of(f)
            shares = contributions(model_score_of(edge, consensus), votes, regime, consensus)
            score = round(sum(shares.values()), 6)
            candle_time = datetime.fromtimestamp(opened, UTC)
            yield HoldRecord(
                decision_id_for(rows.account, symbols[k], rows.timeframe, candle_time),
                symbols[k], candle_time, to_decimal(close), p, votes, score,
                hold_reason(about_of(edge, p, score), tradeable), shares, regime,
                candle_time + step_, f,
            )  # fmt: skip


_VIEWS = {BullAgent: bull_view, BearAgent: bear_view}


def _input(rows: HoldRows, i: int, settings: HoldSettings) -> DecisionInput:
    return DecisionInput(
        account=rows.account,
        symbol=Symbol(rows.symbols[int(rows.symbol[i])]),
        timeframe=rows.timeframe,
        candle_time=datetime.fromtimestamp(int(rows.opened[i]), UTC),
        price=to_decimal(float(rows.close[i])),
        features=FeatureRow(rows.index, rows.features, i, rows.books.get(i)),
        model_probability=float(rows.probability[i]),
        model_edge=float(rows.edge[i]),
        model_tradeable=settings.tradeable,
        model_quality=settings.quality,
        model_name=settings.model_name,
        model_version=settings.model_version,
        feature_set_version=settings.feature_set_version,
    )
