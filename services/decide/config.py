"""What a decision run needs to know, built once from settings by services.bootstrap."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, is_dataclass

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
    # A digest of what decides (consensus, sizing, limits), kept with each decision: a replay
    # under other settings says so.
    digest: str = field(default="", init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "digest", config_digest(self))


def config_digest(cfg: DecisionConfig) -> str:
    canonical = json.dumps(_canon((cfg.consensus, cfg.sizing, cfg.limits)), sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _canon(x: object) -> object:
    """Plain JSON values in one order whatever the process's hash seed (sets are sorted)."""
    if is_dataclass(x) and not isinstance(x, type):
        return {f.name: _canon(getattr(x, f.name)) for f in fields(x) if not f.name.startswith("_")}
    if isinstance(x, Mapping):
        return {str(k): _canon(v) for k, v in x.items()}
    if isinstance(x, set | frozenset):
        return sorted((_canon(v) for v in x), key=str)
    if isinstance(x, list | tuple):
        return [_canon(v) for v in x]
    if x is None or isinstance(x, bool | int | float):
        return x
    return str(x)
