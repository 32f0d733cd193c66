"""Trading states: ACTIVE (everything the limits allow), REDUCING (only orders that shrink
exposure), HALTED (nothing). Every change is a StateChange with its cause, for the ledger."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class TradingState(StrEnum):
    ACTIVE = "active"
    REDUCING = "reducing"
    HALTED = "halted"


class Control(StrEnum):
    """The safety controls the ledger keeps a state for (and their events' `control` column)."""

    KILL_SWITCH = "kill_switch"
    CIRCUIT_BREAKER = "circuit_breaker"
    RECONCILIATION = "reconciliation"  # active: not reconciled since start, or differences found
    OPERATOR = "operator"  # reason holds the state an operator asked for (reducing, halted)
    TRADING_STATE = "trading_state"  # events only: each change of the effective state


class HaltCause(StrEnum):
    KILL_SWITCH = "kill_switch"
    CIRCUIT_BREAKER = "circuit_breaker"
    NOT_RECONCILED = "not_reconciled"  # after a restart, until the first reconciliation passes
    DAILY_LOSS = "daily_loss"  # moves ACTIVE to REDUCING
    OPERATOR = "operator"
    CLEARED = "cleared"  # back to ACTIVE: every control released


@dataclass(frozen=True, slots=True)
class StateChange:
    previous: TradingState
    current: TradingState
    cause: HaltCause
    detail: str
    at: datetime


@dataclass(frozen=True, slots=True)
class SafetyFlags:
    """What the gate sees of the safety controls at decision time."""

    kill_switch_reason: str | None = None  # None: not active
    breaker_reason: str | None = None  # None: not tripped (or its cooldown is over)
    reconciled: bool = True
    reconciliation_reason: str | None = None  # why not reconciled: pending since start, or failed
    operator_state: TradingState = TradingState.ACTIVE


def effective_state(flags: SafetyFlags) -> tuple[TradingState, HaltCause | None, str]:
    """The most restrictive state any control asks for, with the cause that asks for it."""
    if flags.kill_switch_reason is not None:
        return TradingState.HALTED, HaltCause.KILL_SWITCH, flags.kill_switch_reason
    if flags.breaker_reason is not None:
        return TradingState.HALTED, HaltCause.CIRCUIT_BREAKER, flags.breaker_reason
    if not flags.reconciled:
        why = flags.reconciliation_reason or "waiting for the first reconciliation since start"
        return TradingState.HALTED, HaltCause.NOT_RECONCILED, why
    if flags.operator_state is not TradingState.ACTIVE:
        return flags.operator_state, HaltCause.OPERATOR, "set by the operator"
    return TradingState.ACTIVE, None, ""
