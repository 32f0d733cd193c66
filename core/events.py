"""What happened, as others are told of it: the WebSocket's channels and the webhooks' events.

An event is written to the ledger's outbox in the same transaction as the change it reports, so
a reader (another process) sees it exactly when the change is visible, and in order.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any


class Channel(StrEnum):
    ORDERS = "orders"
    POSITIONS = "positions"
    DECISIONS = "decisions"
    SAFETY = "safety"
    METRICS = "metrics"


class EventKind(StrEnum):
    """`<what>.<how>`; a webhook subscribes to kinds or to whole channels."""

    DECISION_MADE = "decision.made"
    ORDER_CREATED = "order.created"
    ORDER_UPDATED = "order.updated"  # any status change: submitted, filled, canceled…
    FILL_RECORDED = "fill.recorded"
    POSITION_CHANGED = "position.changed"
    KILL_SWITCH = "safety.kill_switch"
    CIRCUIT_BREAKER = "safety.circuit_breaker"
    METRICS_UPDATED = "metrics.updated"


CHANNEL_OF: Mapping[EventKind, Channel] = {
    EventKind.DECISION_MADE: Channel.DECISIONS,
    EventKind.ORDER_CREATED: Channel.ORDERS,
    EventKind.ORDER_UPDATED: Channel.ORDERS,
    EventKind.FILL_RECORDED: Channel.ORDERS,
    EventKind.POSITION_CHANGED: Channel.POSITIONS,
    EventKind.KILL_SWITCH: Channel.SAFETY,
    EventKind.CIRCUIT_BREAKER: Channel.SAFETY,
    EventKind.METRICS_UPDATED: Channel.METRICS,
}


@dataclass(frozen=True, slots=True)
class Event:
    """One outbox entry. `event_id` grows with every event (the readers' cursor);
    `correlation_id` is the decision id the event stems from, when there is one, so a
    decision, its order, its fills and their webhook deliveries share it."""

    event_id: int
    kind: EventKind
    payload: Mapping[str, Any]
    created_at: datetime
    correlation_id: str | None = None

    @property
    def channel(self) -> Channel:
        return CHANNEL_OF[self.kind]

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.event_id,
            "channel": self.channel.value,
            "kind": self.kind.value,
            "correlation_id": self.correlation_id,
            "created_at": self.created_at.isoformat(),
            "data": dict(self.payload),
        }
