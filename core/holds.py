"""Holds in bulk: the decisions of flat symbols whose policy holds, most of a backtest's.

A symbol that holds nothing (no position, no buy working) and whose model's edge does not
clear the policy's entry bar proposes no order. Neither the risk state nor the risk gate has a
say then: its decision (the agents' votes, the consensus' HOLD, or NO_TRADE when the agents
could not vote) depends on the candle alone. A replay sets these candles aside as it goes
(`HoldRows`: a few columns per candle) and `HoldDecider` decides them later, on a flat account:
in bulk from the very functions `decide` calls (the agents' cases, the consensus' weighing), or
by `decide` itself. Where that runs is the recorder's choice: a backtest's runs it beside the
replay, on the other core (infra.ledger.decision_writer).

Only for a panel whose votes read the candle alone (`candle_only`: the offline rule panel). An
LLM panel reads a brief of the account and of the recent decisions, and deliberates on the
symbols of a candle time together.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal

import numpy as np

from core.agents.base import Agent, Vote
from core.agents.brief import REGIME_FEATURES, regime_at
from core.agents.panel import Panel, PanelRequest, RulePanel
from core.agents.rules import (
    RULE_FEATURES,
    BearAgent,
    BullAgent,
    bear_case,
    bear_signs,
    bull_case,
    bull_signs,
    cited,
    readings,
)
from core.candles.timeframe import timeframe_delta
from core.consensus import (
    ConsensusConfig,
    Weighing,
    about_of,
    hold_reason,
    model_score_of,
    shares,
    weighing,
)
from core.decision import Decision, DecisionInput, Sizing, agent_context, decide
from core.errors import FatalError
from core.features.book_specs import BOOK_FEATURE_NAMES
from core.features.row import FeatureRow
from core.models.policy import holds_flat
from core.orders import decision_id_at, decision_id_for
from core.risk.limits import RiskLimits, RiskState
from core.types import Symbol, to_decimal

# The state a hold is decided on: holding nothing is all the consensus reads of it.
_FLAT_ACCOUNT = RiskState(cash=Decimal(0), positions={}, prices={})


class NotAHold(FatalError, AssertionError):
    """A candle set aside as a hold proposed an order: it was chosen wrongly."""


def candle_only(panel: Panel) -> bool:
    """Whether `panel`'s votes read the candle alone, so its holds can be decided apart."""
    return isinstance(panel, RulePanel)


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


@dataclass(frozen=True)
class HoldColumns:
    """Holds decided in bulk (`HoldDecider.columns`), a list per column: item i of each is
    the i-th hold read apart. Its votes are `vote_cases[case[i]]` with their reasons replaced
    by `vote_reasons[i]` (a rule vote's action and confidence take a few values; its reason
    quotes the candle). Rows whose votes cannot be read apart are in `decided`, whole."""

    decision_id: list[str]
    symbol: list[str]
    candle_time: list[datetime]
    decided_at: list[datetime]
    price: list[Decimal]
    probability: list[float]
    vote_cases: tuple[tuple[Vote, ...], ...]
    case: list[int]
    vote_reasons: list[tuple[str, ...]]
    score: list[float]
    reason: list[str]
    contributions: list[dict[str, float]]
    regime: list[str]
    decided: list[Decision]

    def __len__(self) -> int:
        return len(self.decision_id) + len(self.decided)

    @classmethod
    def whole(cls, decided: list[Decision]) -> HoldColumns:
        """None read apart: every hold decided whole."""
        return cls(*([] for _ in range(6)), (), *([] for _ in range(6)), decided)


@dataclass(frozen=True)
class HoldDecider:
    """Decides holds on a flat account at each candle's close.

    `decisions` runs `decide` itself, one hold at a time, in order. `columns` gives the same
    decisions in bulk, as the values their records hold (a test holds the two equal); it
    refuses (NotAHold) agents other than one Bull and one Bear rule agent: ask `decisions`."""

    settings: HoldSettings
    panel: Panel

    def __post_init__(self) -> None:
        if not candle_only(self.panel):
            raise NotAHold(f"the {self.panel.name} panel does not vote on the candle alone")

    @property
    def plain(self) -> bool:
        """Whether `columns` can read these holds' votes apart: rule agents, one of each kind."""
        agents = getattr(self.panel, "agents", ())
        kinds = [type(a) for a in agents]
        return bool(kinds) and all(k in _RULES for k in kinds) and len(set(kinds)) == len(kinds)

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

    def columns(self, rows: HoldRows) -> HoldColumns:
        """The holds' decisions as the values their records hold, from the functions `decide`
        calls for a flat hold of the Bull and Bear rule agents (the signs of their evidence,
        their cases, the regime, the consensus' shares, score and reason) without the objects
        around them: a backtest records hundreds of thousands of holds, and those objects were
        most of their cost. A row whose agents read an order book, or could not vote (a
        feature missing), is decided whole by `decisions`."""
        if not self.plain:
            raise NotAHold(f"the agents of the {self.panel.name} panel are not Bull and Bear")
        if any(n not in rows.index for n in RULE_FEATURES) or _BOOKS & rows.index.keys():
            return HoldColumns.whole(list(self.decisions(rows)))
        with_book = np.zeros(len(rows), dtype=bool)
        with_book[list(rows.books)] = True
        if not with_book.any():
            return _read_apart(self, rows, [])
        return _read_apart(self, rows.take(~with_book), list(self.decisions(rows.take(with_book))))


# The rule agents whose votes `columns` reads apart: the signs of their evidence, their case.
_RULES = {BullAgent: (bull_signs, bull_case), BearAgent: (bear_signs, bear_case)}
_BOOKS = frozenset(BOOK_FEATURE_NAMES)
_TREND, _VOL = REGIME_FEATURES

VoteCases = tuple[tuple[Vote, ...], ...]


def _vote_cases(agents: Sequence[Agent], rows: HoldRows) -> tuple[np.ndarray, VoteCases]:
    """Each row's case (an index into the cases) and the cases: every combination of the
    agents' votes, each vote's reason its trend word (a row's reasons quote its features)."""
    f, ix = rows.features, rows.index
    ema, macd, rsi = (f[:, ix[name]] for name in RULE_FEATURES)
    code = np.zeros(len(rows), dtype=np.int64)
    each: list[list[Vote]] = []
    for agent in agents:
        signs, case = _RULES[type(agent)]  # type: ignore[index]
        first, second = signs(ema, macd, rsi)
        code = code * 4 + first.astype(np.int64) * 2 + second.astype(np.int64)
        least = agent.min_confidence  # type: ignore[attr-defined]
        each.append([Vote(agent.name, *case(c > 1, c % 2 == 1, 0.0, least)) for c in range(4)])
    last = len(each) - 1
    cases = tuple(
        tuple(votes[(c >> 2 * (last - j)) & 3] for j, votes in enumerate(each))
        for c in range(4 ** len(each))
    )
    return code, cases


def _read_apart(decider: HoldDecider, rows: HoldRows, decided: list[Decision]) -> HoldColumns:
    """HoldDecider.columns on rows whose votes can be read apart."""
    code, cases = _vote_cases(decider.panel.agents, rows)  # type: ignore[attr-defined]
    f, ix, n = rows.features, rows.index, len(rows)
    ema, macd, rsi = (f[:, ix[name]].tolist() for name in RULE_FEATURES)
    trend = f[:, ix[_TREND]].tolist() if _TREND in ix else [0.0] * n
    vol = f[:, ix[_VOL]].tolist() if _VOL in ix else [None] * n
    one = _OneHold(decider.settings, cases, rows)
    entering = ~holds_flat(rows.edge, decider.settings.consensus.policy, one.tradeable)
    if entering.any():
        i = int(np.argmax(entering))
        symbol = rows.symbols[int(rows.symbol[i])]
        raise NotAHold(f"{symbol} at {int(rows.opened[i])}: the policy enters, not a hold")
    made = list(
        map(
            one, rows.symbol.tolist(), rows.opened.tolist(), rows.close.tolist(),
            rows.probability.tolist(), rows.edge.tolist(), code.tolist(), ema, macd, rsi,
            trend, vol,
        )
    )  # fmt: skip
    columns = [list(c) for c in zip(*made, strict=True)] if made else [[] for _ in range(12)]
    did, symbol, candle_time, decided_at, price, p, case, reasons, score, why, shares, regime = (
        columns
    )
    return HoldColumns(
        did, symbol, candle_time, decided_at, price, p, cases, case, reasons, score, why,
        shares, regime, decided,
    )  # fmt: skip


class _OneHold:
    """One hold's record values, from its columns' items (HoldDecider.columns)."""

    def __init__(self, settings: HoldSettings, cases: VoteCases, rows: HoldRows) -> None:
        self.consensus, self.cases = settings.consensus, cases
        self.tradeable = settings.tradeable or not settings.consensus.require_significance
        self.account, self.timeframe = rows.account, rows.timeframe
        self.step = timeframe_delta(rows.timeframe)
        self.symbols = [Symbol(s) for s in rows.symbols]
        self._opened: int | None = None
        self._times = (datetime.min, datetime.min)
        self._weighing: dict[tuple[int, str], Weighing] = {}

    def __call__(
        self, k: int, opened: int, close: float, p: float, edge: float, case: int,
        ema: float, macd: float, rsi: float, trend: float, vol: float | None,
    ) -> tuple[object, ...]:  # fmt: skip
        consensus, symbol = self.consensus, self.symbols[k]  # a hold: _read_apart checked
        if opened != self._opened:  # every symbol of a candle time comes in a row
            start = datetime.fromtimestamp(opened, UTC)
            self._opened, self._times = opened, (start, start + self.step)
        candle_time, decided_at = self._times
        votes, regime = self.cases[case], regime_at(trend, vol)
        weighed = self._weighing.get((case, regime))
        if weighed is None:  # a few per run: the votes' cases times the regimes
            weighed = self._weighing[case, regime] = weighing(votes, regime, consensus)
        shared = shares(model_score_of(edge, consensus), weighed)
        score = round(sum(shared.values()), 6)
        said, seen = cited(p), readings(ema, macd, rsi)
        return (
            decision_id_at(self.account, symbol, self.timeframe, opened),
            symbol, candle_time, decided_at, to_decimal(close), p, case,
            tuple([said + v.reason + seen for v in votes]), score,
            hold_reason(about_of(edge, p, score), self.tradeable), shared, regime,
        )  # fmt: skip


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
