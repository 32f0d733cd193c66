"""The webhook store (SQLite and PostgreSQL): subscriptions, idempotent fan-out, claims that two
dispatchers never share, results recorded only by the attempt's owner, the dead-letter queue."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from core.events import EventKind
from core.webhooks import DeliveryStatus, Outcome, Subscription
from infra.ledger.ledger import Ledger

T0 = datetime(2026, 11, 24, 12, tzinfo=UTC)
LEASE = timedelta(seconds=30)
SECRET = "whsec_store_test"


@pytest.fixture
def subscribe(ledger: Ledger) -> Callable[..., Subscription]:
    def make(*events: str, url: str = "http://127.0.0.1:9/hook") -> Subscription:
        return ledger.webhooks.subscribe(url, events or ("*",), SECRET, "test", T0)

    return make


def publish(ledger: Ledger, *kinds: EventKind) -> list[int]:
    return [ledger.events.publish(k, {"n": i}, T0, f"d-{i}") for i, k in enumerate(kinds)]


def fan_out_all(ledger: Ledger) -> int:
    return ledger.webhooks.fan_out(ledger.events.after(ledger.webhooks.cursor() or 0), T0)


def run_at_once(workers: int, work: Callable[[], object]) -> list[object]:
    """`work` on `workers` threads released together; their results (an error fails the test)."""
    barrier = threading.Barrier(workers)
    results: list[object] = []
    errors: list[BaseException] = []

    def run() -> None:
        barrier.wait()
        try:
            results.append(work())
        except BaseException as exc:  # surfaced below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    return results


def test_subscribe_when_created_then_listed_with_its_secret_and_events(
    ledger: Ledger, subscribe: Callable[..., Subscription]
) -> None:
    sub = subscribe("orders", "safety.kill_switch")

    assert ledger.webhooks.subscriptions() == [sub]
    assert ledger.webhooks.subscription(sub.subscription_id) == sub
    assert (sub.events, sub.secret, sub.active, sub.created_at) == (
        ("orders", "safety.kill_switch"),
        SECRET,
        True,
        T0,
    )
    assert ledger.webhooks.subscription(sub.subscription_id + 1) is None


def test_subscribe_when_events_written_before_then_history_not_delivered(
    ledger: Ledger, subscribe: Callable[..., Subscription]
) -> None:
    publish(ledger, EventKind.ORDER_CREATED, EventKind.ORDER_UPDATED)
    assert ledger.webhooks.cursor() is None

    sub = subscribe()
    [later] = publish(ledger, EventKind.FILL_RECORDED)

    assert fan_out_all(ledger) == 1
    assert [d.event_id for d in ledger.webhooks.deliveries(sub.subscription_id)] == [later]
    assert ledger.webhooks.cursor() == later


def test_fan_out_when_events_match_some_subscriptions_then_one_pending_delivery_each(
    ledger: Ledger, subscribe: Callable[..., Subscription]
) -> None:
    orders, safety, everything = subscribe("orders"), subscribe("safety"), subscribe("*")
    created, fill, kill = publish(
        ledger, EventKind.ORDER_CREATED, EventKind.FILL_RECORDED, EventKind.KILL_SWITCH
    )

    assert fan_out_all(ledger) == 6

    def event_ids(sub: Subscription) -> list[int]:
        return sorted(d.event_id for d in ledger.webhooks.deliveries(sub.subscription_id))

    assert event_ids(orders) == [created, fill]
    assert event_ids(safety) == [kill]
    assert event_ids(everything) == [created, fill, kill]
    [one] = ledger.webhooks.deliveries(safety.subscription_id)
    assert (one.status, one.attempts, one.next_attempt_at) == (DeliveryStatus.PENDING, 0, T0)


def test_fan_out_when_same_events_twice_then_each_delivery_once_and_cursor_stays(
    ledger: Ledger, subscribe: Callable[..., Subscription]
) -> None:
    sub = subscribe()
    ids = publish(ledger, EventKind.ORDER_CREATED, EventKind.ORDER_UPDATED)
    events = ledger.events.after(0)

    assert ledger.webhooks.fan_out(events, T0) == 2
    assert ledger.webhooks.fan_out(events, T0) == 0
    assert ledger.webhooks.fan_out(events[:1], T0) == 0  # an older batch: cursor never moves back

    assert len(ledger.webhooks.deliveries(sub.subscription_id)) == 2
    assert ledger.webhooks.cursor() == ids[-1]


def test_fan_out_when_two_workers_race_then_each_delivery_created_once(
    ledger: Ledger, subscribe: Callable[..., Subscription]
) -> None:
    sub = subscribe()
    publish(ledger, *[EventKind.ORDER_UPDATED] * 20)
    events = ledger.events.after(0)

    created = run_at_once(4, lambda: ledger.webhooks.fan_out(events, T0))

    assert sum(created) == 20  # type: ignore[arg-type]
    assert len(ledger.webhooks.deliveries(sub.subscription_id)) == 20


def test_claim_due_when_claimed_then_attempt_counted_and_held_for_the_lease(
    ledger: Ledger, subscribe: Callable[..., Subscription]
) -> None:
    sub = subscribe(url="http://127.0.0.1:1/x")
    [event_id] = publish(ledger, EventKind.DECISION_MADE)
    fan_out_all(ledger)

    [claimed] = ledger.webhooks.claim_due(T0, 10, LEASE)

    assert (claimed.url, claimed.secret, claimed.event.event_id) == (
        "http://127.0.0.1:1/x",
        SECRET,
        event_id,
    )
    assert claimed.event.correlation_id == "d-0"
    assert (claimed.delivery.attempts, claimed.delivery.next_attempt_at) == (1, T0 + LEASE)
    assert claimed.delivery.subscription_id == sub.subscription_id
    assert ledger.webhooks.claim_due(T0 + LEASE - timedelta(seconds=1), 10, LEASE) == []
    [again] = ledger.webhooks.claim_due(T0 + LEASE, 10, LEASE)  # its sender died: lease over
    assert again.delivery.attempts == 2


def test_claim_due_when_not_due_yet_then_left(
    ledger: Ledger, subscribe: Callable[..., Subscription]
) -> None:
    subscribe()
    publish(ledger, EventKind.DECISION_MADE)
    fan_out_all(ledger)

    assert ledger.webhooks.claim_due(T0 - timedelta(seconds=1), 10, LEASE) == []


def test_claim_due_when_four_dispatchers_race_then_no_delivery_claimed_twice(
    ledger: Ledger, subscribe: Callable[..., Subscription]
) -> None:
    subscribe()
    publish(ledger, *[EventKind.ORDER_UPDATED] * 40)
    fan_out_all(ledger)

    def drain() -> list[int]:
        mine: list[int] = []
        while batch := ledger.webhooks.claim_due(T0, 3, LEASE):
            mine += [c.delivery.delivery_id for c in batch]
        return mine

    claims = [d for batch in run_at_once(4, drain) for d in batch]  # type: ignore[attr-defined]

    assert len(claims) == 40
    assert len(set(claims)) == 40


def test_record_when_delivered_then_delivered_at_set_and_not_due_again(
    ledger: Ledger, subscribe: Callable[..., Subscription]
) -> None:
    sub = subscribe()
    publish(ledger, EventKind.DECISION_MADE)
    fan_out_all(ledger)
    [claimed] = ledger.webhooks.claim_due(T0, 10, LEASE)
    later = T0 + timedelta(seconds=2)

    assert ledger.webhooks.record(claimed, Outcome(DeliveryStatus.DELIVERED, 200), later)

    [stored] = ledger.webhooks.deliveries(sub.subscription_id)
    assert (stored.status, stored.last_status_code, stored.delivered_at) == (
        DeliveryStatus.DELIVERED,
        200,
        later,
    )
    assert ledger.webhooks.claim_due(T0 + timedelta(days=1), 10, LEASE) == []


def test_record_when_failed_then_retried_at_or_dead_with_last_error(
    ledger: Ledger, subscribe: Callable[..., Subscription]
) -> None:
    sub = subscribe()
    publish(ledger, EventKind.DECISION_MADE)
    fan_out_all(ledger)
    [first] = ledger.webhooks.claim_due(T0, 10, LEASE)
    retry_at = T0 + timedelta(seconds=5)

    ledger.webhooks.record(first, Outcome(DeliveryStatus.PENDING, 503, "HTTP 503", retry_at), T0)
    assert ledger.webhooks.claim_due(retry_at - timedelta(seconds=1), 10, LEASE) == []
    [second] = ledger.webhooks.claim_due(retry_at, 10, LEASE)
    ledger.webhooks.record(second, Outcome(DeliveryStatus.DEAD, None, "refused"), retry_at)

    [dead] = ledger.webhooks.deliveries(sub.subscription_id, DeliveryStatus.DEAD)
    assert (dead.attempts, dead.last_error, dead.last_status_code) == (2, "refused", None)
    assert ledger.webhooks.delivery(dead.delivery_id) == dead


def test_record_when_lease_ran_out_and_another_claimed_then_stale_result_ignored(
    ledger: Ledger, subscribe: Callable[..., Subscription]
) -> None:
    sub = subscribe()
    publish(ledger, EventKind.DECISION_MADE)
    fan_out_all(ledger)
    [slow] = ledger.webhooks.claim_due(T0, 10, LEASE)
    [fast] = ledger.webhooks.claim_due(T0 + LEASE, 10, LEASE)

    assert ledger.webhooks.record(fast, Outcome(DeliveryStatus.DELIVERED, 200), T0 + LEASE)
    assert not ledger.webhooks.record(slow, Outcome(DeliveryStatus.DEAD, 500, "HTTP 500"), T0)

    [stored] = ledger.webhooks.deliveries(sub.subscription_id)
    assert stored.status is DeliveryStatus.DELIVERED


def dead_deliveries(ledger: Ledger, sub: Subscription, count: int) -> list[int]:
    publish(ledger, *[EventKind.ORDER_UPDATED] * count)
    fan_out_all(ledger)
    ids = []
    for claimed in ledger.webhooks.claim_due(T0, 100, LEASE):  # every subscription's
        ledger.webhooks.record(claimed, Outcome(DeliveryStatus.DEAD, 500, "HTTP 500"), T0)
        if claimed.delivery.subscription_id == sub.subscription_id:
            ids.append(claimed.delivery.delivery_id)
    return sorted(ids)


def test_replay_when_dead_deliveries_then_all_pending_again_with_attempts_reset(
    ledger: Ledger, subscribe: Callable[..., Subscription]
) -> None:
    sub, other = subscribe(), subscribe()
    dead_deliveries(ledger, sub, 3)
    later = T0 + timedelta(hours=1)

    assert ledger.webhooks.replay(sub.subscription_id, later) == 3

    replayed = ledger.webhooks.deliveries(sub.subscription_id)
    assert {(d.status, d.attempts, d.next_attempt_at) for d in replayed} == {
        (DeliveryStatus.PENDING, 0, later)
    }
    assert (
        len(ledger.webhooks.deliveries(other.subscription_id, DeliveryStatus.DEAD)) == 3
    )  # another's dead letters stay
    assert ledger.webhooks.replay(sub.subscription_id, later) == 0


def test_replay_when_one_delivery_named_then_only_it_even_if_delivered(
    ledger: Ledger, subscribe: Callable[..., Subscription]
) -> None:
    sub, other = subscribe(), subscribe()
    first, second = dead_deliveries(ledger, sub, 2)
    [claimed] = ledger.webhooks.claim_due(T0, 1, LEASE) or [None]  # nothing left to claim
    assert claimed is None

    assert ledger.webhooks.replay(sub.subscription_id, T0, delivery_id=second) == 1
    [again] = ledger.webhooks.claim_due(T0, 10, LEASE)
    ledger.webhooks.record(again, Outcome(DeliveryStatus.DELIVERED, 200), T0)
    assert ledger.webhooks.replay(sub.subscription_id, T0, delivery_id=second) == 1  # delivered

    assert ledger.webhooks.replay(other.subscription_id, T0, delivery_id=first) == 0  # not its
    assert ledger.webhooks.replay(sub.subscription_id, T0, delivery_id=second) == 0  # pending
    assert ledger.webhooks.delivery(first).status is DeliveryStatus.DEAD  # type: ignore[union-attr]


def test_unsubscribe_when_it_had_deliveries_then_both_gone(
    ledger: Ledger, subscribe: Callable[..., Subscription]
) -> None:
    sub, kept = subscribe(), subscribe()
    publish(ledger, EventKind.ORDER_CREATED)
    fan_out_all(ledger)

    assert ledger.webhooks.unsubscribe(sub.subscription_id)

    assert ledger.webhooks.subscriptions() == [kept]
    assert ledger.webhooks.deliveries(sub.subscription_id) == []
    assert len(ledger.webhooks.deliveries(kept.subscription_id)) == 1
    assert not ledger.webhooks.unsubscribe(sub.subscription_id)
