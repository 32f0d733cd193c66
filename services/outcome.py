"""Where a run leaves trading: running, halted by a person (kill switch, operator: the run did
its job), or halted by something that went wrong (failed reconciliation, tripped breaker): then
the run must not look green."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from core.errors import FatalError
from core.ports import Ledger
from core.risk.state import HaltCause, TradingState, effective_state

# Halts a person chose; every other halt means something went wrong.
_CHOSEN = frozenset({HaltCause.KILL_SWITCH, HaltCause.OPERATOR})


class TradingHalted(FatalError):
    """Trading is halted because something went wrong; the message says what."""


@dataclass(frozen=True, slots=True)
class TradingOutcome:
    state: TradingState
    cause: HaltCause | None
    detail: str
    by: str = ""  # who activated the kill switch, when it is the cause

    @property
    def failed(self) -> bool:
        return self.state is not TradingState.ACTIVE and self.cause not in _CHOSEN

    def line(self) -> str:
        if self.cause is None:
            return f"trading {self.state.value}"
        who = f" (activated by {self.by})" if self.by else ""
        return f"trading {self.state.value}: {self.cause.value}: {self.detail}{who}"


def trading_outcome(ledger: Ledger, now: datetime) -> TradingOutcome:
    state, cause, detail = effective_state(ledger.safety.flags(now))
    by = ""
    if cause is HaltCause.KILL_SWITCH:
        activations = [
            r for r in ledger.requests.recent(50, accepted=True) if r.action == "activate"
        ]
        if activations:
            newest = activations[0]
            by = f"{newest.client or 'unknown client'} at {newest.at:%F %T} UTC"
    return TradingOutcome(state, cause, detail, by)


def raise_if_failed(outcome: TradingOutcome) -> None:
    if outcome.failed:
        raise TradingHalted(outcome.line())
