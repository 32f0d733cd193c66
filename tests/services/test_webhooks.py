"""The webhook dispatcher against a loopback receiver that fails, times out, refuses and
recovers (SQLite and PostgreSQL), with the real httpx sender, a fake clock and a fixed rng."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest

from core.clock import FakeClock
from core.events import EventKind
from core.webhooks import (
    CORRELATION_HEADER,
    DELIVERY_HEADER,
    EVENT_HEADER,
    Backoff,
    DeliveryStatus,
    Subscription,
)
from infra.alerts import Alerts
from infra.ledger.ledger import Ledger
from infra.webhooks import HttpxSender
from services.webhooks import DispatchConfig, WebhookDispatcher
from tests.webhook_receiver import Answer, Receiver, free_port, running

NOW = datetime(2026, 11, 24, 12, tzinfo=UTC)
SECRET = "whsec_dispatch_test"
CONFIG = DispatchConfig(max_attempts=3, backoff=Backoff(base_s=10), timeout_s=0.3, parallel=4)


class FixedRng:
    """Equal jitter at 0: each retry waits exactly half its backoff (5 s, 10 s, …)."""

    def random(self) -> float:
        return 0.0


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
def receiver(clock: FakeClock) -> Iterator[Receiver]:
    with running(SECRET, clock.now, slow_s=1.0) as r:
        yield r


@pytest.fixture
def make_dispatcher(ledger: Ledger, clock: FakeClock) -> Iterator[Callable[..., WebhookDispatcher]]:
    made: list[WebhookDispatcher] = []

    def make(alerts: Alerts | None = None) -> WebhookDispatcher:
        sender = HttpxSender()
        d = WebhookDispatcher(
            ledger.events, ledger.webhooks, sender, CONFIG, clock, FixedRng(), alerts
        )
        made.append(d)
        return d

    yield make
    for d in made:
        d.close()


@pytest.fixture
def dispatcher(make_dispatcher: Callable[..., WebhookDispatcher]) -> WebhookDispatcher:
    return make_dispatcher()


def subscribe(ledger: Ledger, url: str, *events: str) -> Subscription:
    return ledger.webhooks.subscribe(url, events or ("*",), SECRET, "test", NOW)


def the_delivery(ledger: Ledger, sub: Subscription):  # type: ignore[no-untyped-def]
    [delivery] = ledger.webhooks.deliveries(sub.subscription_id)
    return delivery


def test_run_once_when_event_published_then_delivered_once_signed_with_headers(
    ledger: Ledger, receiver: Receiver, dispatcher: WebhookDispatcher
) -> None:
    sub = subscribe(ledger, receiver.url, "orders")
    event_id = ledger.events.publish(EventKind.FILL_RECORDED, {"qty": "0.1"}, NOW, "d-7")
    ledger.events.publish(EventKind.DECISION_MADE, {}, NOW)  # not subscribed

    report = dispatcher.run_once()
    again = dispatcher.run_once()

    [got] = receiver.received
    assert got.signature_error is None
    body = json.loads(got.body)
    assert (body["id"], body["kind"], body["correlation_id"], body["data"]) == (
        event_id,
        "fill.recorded",
        "d-7",
        {"qty": "0.1"},
    )
    delivery = the_delivery(ledger, sub)
    assert got.headers[EVENT_HEADER] == "fill.recorded"
    assert got.headers[DELIVERY_HEADER] == str(delivery.delivery_id)
    assert got.headers[CORRELATION_HEADER] == "d-7"
    assert (report.fanned_out, report.delivered, again.attempts) == (1, 1, 0)
    assert (delivery.status, delivery.attempts, delivery.delivered_at) == (
        DeliveryStatus.DELIVERED,
        1,
        NOW,
    )


def test_run_once_when_receiver_fails_then_recovers_then_delivered_after_backoff(
    ledger: Ledger, receiver: Receiver, dispatcher: WebhookDispatcher, clock: FakeClock
) -> None:
    sub = subscribe(ledger, receiver.url)
    ledger.events.publish(EventKind.ORDER_CREATED, {}, NOW)
    receiver.answer(Answer.FAIL, Answer.FAIL)

    assert dispatcher.run_once().retried == 1
    assert the_delivery(ledger, sub).next_attempt_at == NOW + timedelta(seconds=5)
    clock.advance(seconds=4.9)
    assert dispatcher.run_once().attempts == 0  # not due yet
    clock.advance(seconds=0.1)
    assert dispatcher.run_once().retried == 1
    assert the_delivery(ledger, sub).next_attempt_at == NOW + timedelta(seconds=15)
    clock.advance(seconds=10)
    assert dispatcher.run_once().delivered == 1

    assert [r.answer for r in receiver.received] == [Answer.FAIL, Answer.FAIL, Answer.OK]
    assert all(r.signature_error is None for r in receiver.received)  # each signed at its time
    delivery = the_delivery(ledger, sub)
    assert (delivery.status, delivery.attempts, delivery.last_error) == (
        DeliveryStatus.DELIVERED,
        3,
        "HTTP 500",
    )


def test_run_once_when_every_attempt_fails_then_dead_with_last_error_and_an_alert(
    ledger: Ledger,
    receiver: Receiver,
    make_dispatcher: Callable[..., WebhookDispatcher],
    clock: FakeClock,
) -> None:
    alerts = Alerts()
    dispatcher = make_dispatcher(alerts)
    sub = subscribe(ledger, receiver.url)
    ledger.events.publish(EventKind.KILL_SWITCH, {"active": True}, NOW)
    receiver.answer(Answer.FAIL, Answer.FAIL, Answer.FAIL)

    for _ in range(CONFIG.max_attempts):
        dispatcher.run_once()
        clock.advance(hours=1)
    assert dispatcher.run_once().attempts == 0

    [dead] = ledger.webhooks.deliveries(sub.subscription_id, DeliveryStatus.DEAD)
    assert (dead.attempts, dead.last_error, dead.last_status_code) == (3, "HTTP 500", 500)
    assert len(receiver.received) == 3
    [(title, body)] = alerts.sent
    assert title == f"tradeflow webhook {sub.subscription_id} dead-lettered a delivery"
    assert "HTTP 500" in body


def test_run_once_when_receiver_too_slow_then_timeout_retried_then_delivered(
    ledger: Ledger, receiver: Receiver, dispatcher: WebhookDispatcher, clock: FakeClock
) -> None:
    sub = subscribe(ledger, receiver.url)
    ledger.events.publish(EventKind.ORDER_UPDATED, {}, NOW)
    receiver.answer(Answer.SLOW)

    assert dispatcher.run_once().retried == 1
    delivery = the_delivery(ledger, sub)
    assert delivery.last_error is not None
    assert delivery.last_error.startswith("no answer within 0.3 s")
    assert delivery.last_status_code is None
    clock.advance(seconds=5)
    assert dispatcher.run_once().delivered == 1


def test_run_once_when_connection_refused_then_retried_and_delivered_once_receiver_is_up(
    ledger: Ledger, dispatcher: WebhookDispatcher, clock: FakeClock
) -> None:
    port = free_port()
    sub = subscribe(ledger, f"http://127.0.0.1:{port}/hook")
    ledger.events.publish(EventKind.POSITION_CHANGED, {}, NOW)

    assert dispatcher.run_once().retried == 1
    assert "ConnectError" in (the_delivery(ledger, sub).last_error or "")

    with running(SECRET, clock.now, port=port) as receiver:
        clock.advance(seconds=5)
        assert dispatcher.run_once().delivered == 1
        assert [r.signature_error for r in receiver.received] == [None]


def test_replay_when_dead_letter_replayed_then_delivered_on_next_pass(
    ledger: Ledger, receiver: Receiver, dispatcher: WebhookDispatcher, clock: FakeClock
) -> None:
    sub = subscribe(ledger, receiver.url)
    ledger.events.publish(EventKind.METRICS_UPDATED, {}, NOW)
    receiver.answer(*[Answer.FAIL] * CONFIG.max_attempts)
    for _ in range(CONFIG.max_attempts):
        dispatcher.run_once()
        clock.advance(hours=1)
    assert the_delivery(ledger, sub).status is DeliveryStatus.DEAD

    assert ledger.webhooks.replay(sub.subscription_id, clock.now()) == 1
    assert dispatcher.run_once().delivered == 1
    assert [r.answer for r in receiver.received][-1] is Answer.OK


def test_run_once_when_dispatcher_restarted_then_new_one_picks_pending_up(
    ledger: Ledger,
    receiver: Receiver,
    make_dispatcher: Callable[..., WebhookDispatcher],
    clock: FakeClock,
) -> None:
    sub = subscribe(ledger, receiver.url)
    ledger.events.publish(EventKind.ORDER_CREATED, {}, NOW)
    first = make_dispatcher()
    receiver.answer(Answer.FAIL)
    first.run_once()
    ledger.events.publish(EventKind.ORDER_UPDATED, {}, NOW)
    first.fan_out(NOW)
    [orphan] = ledger.webhooks.claim_due(NOW, 10, CONFIG.lease)  # claimed, then the API died
    first.close()  # the ledger keeps the pending retry and the claimed orphan

    second = make_dispatcher()
    clock.advance(seconds=5)
    assert second.run_once().delivered == 1  # the retry; the orphan waits for its lease
    clock.advance(seconds=CONFIG.lease.total_seconds())
    assert second.run_once().delivered == 1

    assert [d.status for d in ledger.webhooks.deliveries(sub.subscription_id)] == [
        DeliveryStatus.DELIVERED,
        DeliveryStatus.DELIVERED,
    ]
    assert len(receiver.ok()) == 2
    assert receiver.received[-1].headers[DELIVERY_HEADER] == str(orphan.delivery.delivery_id)


def test_run_once_when_two_dispatchers_share_a_ledger_then_nothing_sent_twice(
    ledger: Ledger, receiver: Receiver, make_dispatcher: Callable[..., WebhookDispatcher]
) -> None:
    subscribe(ledger, receiver.url)
    for i in range(30):
        ledger.events.publish(EventKind.ORDER_UPDATED, {"n": i}, NOW)
    dispatchers = [make_dispatcher(), make_dispatcher()]
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def drain(d: WebhookDispatcher) -> None:
        barrier.wait()
        try:
            while d.run_once().attempts:
                pass
        except BaseException as exc:  # surfaced in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=drain, args=(d,)) for d in dispatchers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    sent = [r.headers[DELIVERY_HEADER] for r in receiver.received]
    assert len(sent) == 30
    assert len(set(sent)) == 30


def test_run_once_when_no_subscription_ever_made_then_nothing_fanned_out(
    ledger: Ledger, dispatcher: WebhookDispatcher
) -> None:
    ledger.events.publish(EventKind.ORDER_CREATED, {}, NOW)

    assert dispatcher.run_once().attempts == 0
    assert ledger.webhooks.cursor() is None


def test_run_once_when_alert_repeats_are_due_then_summary_flushed(
    ledger: Ledger,
    receiver: Receiver,
    make_dispatcher: Callable[..., WebhookDispatcher],
    clock: FakeClock,
) -> None:
    url = receiver.url.replace("http://", "json://")
    alerts = Alerts([url], states=ledger.alerts, debounce=timedelta(minutes=5), clock=clock)
    dispatcher = make_dispatcher(alerts)
    for _ in range(3):
        alerts.send("tradeflow exchange down", "timeout")

    assert dispatcher.run_once().summaries == 0
    clock.advance(minutes=5)
    assert dispatcher.run_once().summaries == 1

    titles = [json.loads(r.body)["title"] for r in receiver.received]
    assert titles == [
        "tradeflow exchange down",
        "tradeflow exchange down (repeated 2 times since 2026-11-24 12:00:00 UTC)",
    ]


@pytest.mark.parametrize("ledger_url", ["postgresql"], indirect=True)
def test_run_once_when_an_earlier_event_commits_after_a_later_one_then_both_delivered(
    ledger: Ledger, receiver: Receiver, dispatcher: WebhookDispatcher
) -> None:
    """PostgreSQL takes an id at insert and shows the row at commit: the dispatcher reads the
    later event first, and must not move its cursor over the earlier one still uncommitted."""
    from infra.ledger.events import append

    subscribe(ledger, receiver.url)
    ledger.events.publish(EventKind.DECISION_MADE, {"n": 0}, NOW)
    dispatcher.run_once()  # the cursor is past the first event
    with ledger._sessions.write() as slow:  # open until the end of the block
        early = append(slow, EventKind.ORDER_CREATED, {"n": 1}, NOW)
        late = ledger.events.publish(EventKind.ORDER_CREATED, {"n": 2}, NOW)
        assert dispatcher.run_once().delivered == 1  # only the committed one is visible
    report = dispatcher.run_once()

    assert early < late
    assert report.delivered == 1
    assert sorted(json.loads(r.body)["id"] for r in receiver.ok()) == [early - 1, early, late]


def test_settled_cursor_when_a_gap_is_old_then_given_up(
    ledger: Ledger, dispatcher: WebhookDispatcher, clock: FakeClock
) -> None:
    """An id that never commits (a rolled-back write) holds the cursor only HOLE_WAIT."""
    from core.webhooks import HOLE_WAIT
    from infra.ledger.events import append

    subscribe(ledger, "http://127.0.0.1:9/")
    start = ledger.webhooks.cursor()
    with pytest.raises(RuntimeError), ledger._sessions.write() as s:  # noqa: PT012
        append(s, EventKind.ORDER_CREATED, {}, NOW)  # takes an id, then rolls back
        raise RuntimeError("rolled back")
    last = ledger.events.publish(EventKind.ORDER_CREATED, {}, NOW)
    dispatcher.fan_out(NOW)
    held = ledger.webhooks.cursor()
    dispatcher.fan_out(NOW + HOLE_WAIT)

    if last == (start or 0) + 1:  # SQLite reuses the rolled-back id: no gap at all
        assert held == last
    else:
        assert held == start
    assert ledger.webhooks.cursor() == last
