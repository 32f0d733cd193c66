"""What a decision run needs to know, built once from settings by services.bootstrap."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from core.consensus import ConsensusConfig
from core.decision import Sizing
from core.risk.breaker import BreakerConfig
from core.risk.limits import RiskLimits


@dataclass(frozen=True, slots=True)
class DecisionConfig:
    account: str
    exchange: str
    symbols: Sequence[str]
    timeframe: str
    reference_symbol: str
    consensus: ConsensusConfig
    sizing: Sizing
    limits: RiskLimits
    breaker: BreakerConfig = field(default_factory=BreakerConfig)
    # Live: the most closed candles one run decides when it catches up after a pause.
    catch_up_candles: int = 24
    # Each recorded decision keeps what replaying it bit for bit needs (services.decide.step
    # provenance); a backtest, which records into a scratch ledger, may skip it.
    record_provenance: bool = True
    recent_decisions: int = 3  # the last decisions of a symbol an LLM agent's brief cites
