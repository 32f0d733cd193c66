"""The event outbox (SQLite and PostgreSQL): an event commits with the change it reports or not
at all, is read back in id order, and a reader's cursor never moves back."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from core.events import Channel, EventKind
from infra.ledger.events import NOTIFY_CHANNEL, append
from infra.ledger.ledger import Ledger

T0 = datetime(2024, 2, 3, 12, tzinfo=UTC)


def test_after_when_events_published_then_read_back_in_id_order_with_payload(
    ledger: Ledger,
) -> None:
    first = ledger.events.publish(EventKind.DECISION_MADE, {"action": "BUY"}, T0, "d-1")
    second = ledger.events.publish(EventKind.ORDER_CREATED, {"qty": "0.5"}, T0, "d-1")

    events = ledger.events.after(0)

    assert first < second
    assert [e.event_id for e in events] == [first, second]
    assert events[1].channel is Channel.ORDERS
    assert events[1].payload == {"qty": "0.5"}
    assert events[0].created_at == T0
    assert ledger.events.after(first) == events[1:]
    assert ledger.events.last_id() == second
    assert [e.kind for e in ledger.events.for_correlation("d-1")] == [
        EventKind.DECISION_MADE,
        EventKind.ORDER_CREATED,
    ]


def test_after_when_kinds_given_then_only_those(ledger: Ledger) -> None:
    ledger.events.publish(EventKind.DECISION_MADE, {}, T0)
    fill = ledger.events.publish(EventKind.FILL_RECORDED, {}, T0)

    assert [e.event_id for e in ledger.events.after(0, kinds=[EventKind.FILL_RECORDED])] == [fill]


def test_append_when_transaction_fails_then_no_event_is_left(ledger: Ledger) -> None:
    def failing_change() -> None:
        with ledger._sessions.write() as s:
            append(s, EventKind.KILL_SWITCH, {"active": True}, T0)
            raise RuntimeError("the change it reports failed")

    with pytest.raises(RuntimeError):
        failing_change()

    assert ledger.events.after(0) == []
    assert ledger.events.last_id() == 0


@pytest.mark.parametrize("ledger_url", ["postgresql"], indirect=True)
def test_append_when_on_postgresql_then_listeners_are_notified_at_commit(
    ledger: Ledger, ledger_url: str
) -> None:
    import psycopg

    dsn = ledger_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True) as listener:
        listener.execute(f"LISTEN {NOTIFY_CHANNEL}")
        event_id = ledger.events.publish(EventKind.KILL_SWITCH, {"active": True}, T0)
        notes = list(listener.notifies(timeout=5, stop_after=1))

    assert [n.payload for n in notes] == [str(event_id)]
