"""What the loop reads from the ledger around each step, on real candles: the symbols' last
decisions only for a panel whose agents may cite them (an LLM's brief), and the account's
starting cash once per loop."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

import pandas as pd
import pytest

from core.agents.panel import Deliberation, PanelRequest, RulePanel
from core.agents.rules import BearAgent, BullAgent
from core.records import DecisionRecord
from core.types import DecisionId
from infra.alerts import Alerts
from infra.ledger.memory import MemoryLedger
from services.decide.batch import FEATURE_WINDOW, DecisionBatch, prepare_batch
from services.decide.loop import DecisionLoop
from tests.services.backtest.test_identity import RsiModel
from tests.services.decide.fakes import SYMBOLS, D, config

CANDLES = 3
RULES = RulePanel((BullAgent(), BearAgent()))
CFG = config()


@dataclass
class BriefReadingPanel:
    """Votes as the rule agents do, but reads each request's brief, as an LLM panel does
    (so it is not a candle-only panel): the briefs' recent decisions are kept."""

    name: str = "brief-reader"
    settings: dict[str, object] = field(default_factory=dict)
    cited: list[list[str]] = field(default_factory=list)  # per request, the actions cited

    def deliberate(
        self, requests: Sequence[PanelRequest], now: datetime
    ) -> dict[DecisionId, Deliberation]:
        for r in requests:
            brief = r.context.brief
            assert brief is not None
            self.cited.append([d.action for _, d in brief.recent])
        return RULES.deliberate(requests, now)


class CountingLedger(MemoryLedger):
    """A memory ledger that counts the reads these tests are about."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = {"recent_decisions": 0, "starting_cash": 0}
        recent, starting = self.orders.recent_decisions, self.accounts.starting_cash

        def recent_decisions(*args: object, **kwargs: object) -> list[DecisionRecord]:
            self.reads["recent_decisions"] += 1
            return recent(*args, **kwargs)  # type: ignore[arg-type]

        def starting_cash(account: str) -> D:
            self.reads["starting_cash"] += 1
            return starting(account)

        self.orders.recent_decisions = recent_decisions  # type: ignore[method-assign]
        self.accounts.starting_cash = starting_cash  # type: ignore[method-assign]


@pytest.fixture
def ledger(btc_1h: pd.DataFrame, eth_1h: pd.DataFrame) -> CountingLedger:
    ledger = CountingLedger()
    first = btc_1h["open_time"].iloc[FEATURE_WINDOW].to_pydatetime()
    ledger.accounts.ensure(CFG.account, D(10000), first - timedelta(hours=1))
    for symbol, frame in zip(SYMBOLS, (btc_1h, eth_1h), strict=True):
        ledger.candles.upsert("binance", symbol, "1h", frame.head(FEATURE_WINDOW + CANDLES))
    return ledger


def _decide_all(ledger: CountingLedger, panel: object) -> DecisionBatch:
    batch = prepare_batch(ledger, RsiModel(), CFG, CANDLES)
    loop = DecisionLoop(ledger, panel, replace(CFG, record_provenance=False), Alerts(()))  # type: ignore[arg-type]
    for t in batch.times:
        loop.decide(batch, t, t.to_pydatetime() + timedelta(hours=1), "paper", frozenset())
    return batch


def test_decide_when_the_panel_votes_on_the_candle_alone_then_no_recent_decision_is_read(
    ledger: CountingLedger,
) -> None:
    _decide_all(ledger, RULES)
    assert ledger.reads["recent_decisions"] == 0
    assert len(ledger.orders.decisions(CFG.account)) == CANDLES * len(SYMBOLS)


def test_decide_when_the_panel_reads_briefs_then_each_cites_the_decisions_before_it(
    ledger: CountingLedger,
) -> None:
    panel = BriefReadingPanel()
    _decide_all(ledger, panel)
    assert ledger.reads["recent_decisions"] == len(SYMBOLS)  # seeded once, then kept
    decided = {
        (d.symbol, d.candle_time): d.action.value for d in ledger.orders.decisions(CFG.account)
    }
    by_symbol = [[a for (s, _), a in sorted(decided.items()) if s == sym] for sym in SYMBOLS]
    # Requests go symbol by symbol at each candle: the k-th candle's brief cites the k before.
    for k in range(CANDLES):
        for j, actions in enumerate(by_symbol):
            assert panel.cited[k * len(SYMBOLS) + j] == list(reversed(actions[:k]))


def test_decide_when_a_loop_runs_then_the_starting_cash_is_read_once(
    ledger: CountingLedger,
) -> None:
    _decide_all(ledger, RULES)
    assert ledger.reads["starting_cash"] == 1  # the day's equity and the breaker's peak share it
