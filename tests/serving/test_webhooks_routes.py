"""The webhook routes (scope admin) over a real ledger, and the API's background dispatcher
delivering to a loopback receiver, across an API restart (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from core.auth import Scope
from core.clock import FakeClock
from core.events import EventKind
from core.webhooks import DeliveryStatus, Outcome
from infra.ledger.ledger import open_ledger
from tests.serving.conftest import NOW, make_client
from tests.serving.tokens import bearer, issue_token
from tests.webhook_receiver import Answer, Receiver, running

URL = "/api/v1/webhooks"
HOOK = "https://hooks.example.com/tradeflow"


@pytest.fixture
def admin(ledger_url: str) -> dict[str, str]:
    return bearer(issue_token(ledger_url, Scope.ADMIN))


@pytest.fixture
def api(ledger_url: str) -> TestClient:
    """The app without its lifespan: no background dispatcher, so a test sends by itself."""
    return make_client(ledger_url)


def create(api: TestClient, admin: dict[str, str], **body: object) -> dict[str, object]:
    answer = api.post(URL, json={"url": HOOK, "events": ["orders"]} | body, headers=admin)
    assert answer.status_code == 201, answer.text
    created: dict[str, object] = answer.json()
    return created


def test_create_when_admin_then_201_with_a_generated_secret_shown_once(
    api: TestClient, admin: dict[str, str]
) -> None:
    created = create(api, admin, events=["orders", "safety.kill_switch"], description="ops")

    assert str(created["secret"]).startswith("whsec_")
    assert len(str(created["secret"])) > 40
    listed = api.get(URL, headers=admin).json()["webhooks"]
    shown = {k: v for k, v in created.items() if k != "secret"}
    assert listed == [shown]
    assert api.get(f"{URL}/{created['id']}", headers=admin).json() == shown
    assert shown["events"] == ["orders", "safety.kill_switch"]
    assert shown["created_at"] == NOW.isoformat()


def test_create_when_secret_given_then_it_signs(api: TestClient, admin: dict[str, str]) -> None:
    created = create(api, admin, secret="my-own-secret-0123456789")

    assert created["secret"] == "my-own-secret-0123456789"


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"url": "ftp://example.com/x", "events": ["orders"]}, ["body", "url"]),
        ({"url": "http://", "events": ["orders"]}, ["body", "url"]),
        ({"url": HOOK, "events": ["order.filled"]}, ["body", "events"]),
        ({"url": HOOK, "events": []}, ["body", "events"]),
        ({"url": HOOK, "events": ["*"], "secret": "short"}, ["body", "secret"]),
        ({"url": HOOK, "events": ["*"], "description": "a\x00b"}, ["body", "description"]),
        ({"url": HOOK, "events": ["*"], "active": False}, ["body", "active"]),
    ],
)
def test_create_when_body_invalid_then_422_naming_the_field_and_nothing_stored(
    api: TestClient, admin: dict[str, str], body: dict[str, object], loc: list[str]
) -> None:
    answer = api.post(URL, json=body, headers=admin)

    assert answer.status_code == 422
    assert [e["loc"] for e in answer.json()["detail"]] == [loc]
    assert api.get(URL, headers=admin).json() == {"webhooks": []}


@pytest.mark.parametrize("scope", [None, Scope.READ, Scope.TRADE])
def test_routes_when_token_lacks_admin_then_401_or_403(
    api: TestClient, ledger_url: str, scope: Scope | None
) -> None:
    headers = {} if scope is None else bearer(issue_token(ledger_url, scope))
    expected = 401 if scope is None else 403

    answers = [
        api.post(URL, json={"url": HOOK, "events": ["*"]}, headers=headers),
        api.get(URL, headers=headers),
        api.get(f"{URL}/1/deliveries", headers=headers),
        api.post(f"{URL}/1/replay", headers=headers),
        api.delete(f"{URL}/1", headers=headers),
    ]

    assert [a.status_code for a in answers] == [expected] * 5


def test_delete_when_subscribed_then_204_then_404(api: TestClient, admin: dict[str, str]) -> None:
    webhook_id = create(api, admin)["id"]

    assert api.delete(f"{URL}/{webhook_id}", headers=admin).status_code == 204
    assert api.delete(f"{URL}/{webhook_id}", headers=admin).status_code == 404
    assert api.get(f"{URL}/{webhook_id}", headers=admin).status_code == 404
    assert api.get(URL, headers=admin).json() == {"webhooks": []}


@pytest.mark.parametrize("webhook_id", ["0", "-1", str(2**31), "abc", str(10**30)])
def test_routes_when_id_out_of_range_then_422_not_a_database_error(
    api: TestClient, admin: dict[str, str], webhook_id: str
) -> None:
    assert api.get(f"{URL}/{webhook_id}/deliveries", headers=admin).status_code == 422
    assert api.post(f"{URL}/{webhook_id}/replay", headers=admin).status_code == 422


def test_unknown_webhook_when_asked_then_404(api: TestClient, admin: dict[str, str]) -> None:
    assert api.get(f"{URL}/7/deliveries", headers=admin).status_code == 404
    assert api.post(f"{URL}/7/replay", headers=admin).json() == {"detail": "no webhook 7"}


def dead_letters(ledger_url: str, count: int, webhook_id: object) -> list[int]:
    """`count` events fanned out and dead-lettered with "HTTP 500"; the ids of webhook
    `webhook_id`'s."""
    led = open_ledger(ledger_url)
    for _ in range(count):
        led.events.publish(EventKind.ORDER_CREATED, {}, NOW)
    led.webhooks.fan_out(led.events.after(led.webhooks.cursor() or 0), NOW)
    ids = []
    for claimed in led.webhooks.claim_due(NOW, 100, timedelta(minutes=1)):
        led.webhooks.record(claimed, Outcome(DeliveryStatus.DEAD, 500, "HTTP 500"), NOW)
        if claimed.delivery.subscription_id == webhook_id:
            ids.append(claimed.delivery.delivery_id)
    return sorted(ids)


def test_deliveries_when_status_dead_then_dead_letters_with_their_last_error(
    api: TestClient, admin: dict[str, str], ledger_url: str
) -> None:
    webhook_id = create(api, admin)["id"]
    first, second = dead_letters(ledger_url, 2, webhook_id)

    dead = api.get(f"{URL}/{webhook_id}/deliveries?status=dead", headers=admin).json()
    pending = api.get(f"{URL}/{webhook_id}/deliveries?status=pending", headers=admin).json()

    assert [d["id"] for d in dead["deliveries"]] == [second, first]  # newest first
    assert {
        (d["last_error"], d["last_status_code"], d["attempts"]) for d in dead["deliveries"]
    } == {("HTTP 500", 500, 1)}
    assert pending == {"deliveries": []}
    bad = api.get(f"{URL}/{webhook_id}/deliveries?status=lost", headers=admin)
    assert bad.status_code == 422


def test_replay_when_dead_letters_then_pending_again_and_a_pass_delivers_them(
    api: TestClient, admin: dict[str, str], ledger_url: str
) -> None:
    with running() as receiver:
        answer = api.post(URL, json={"url": receiver.url, "events": ["*"]}, headers=admin)
        webhook_id = answer.json()["id"]
        dead_letters(ledger_url, 2, webhook_id)

        replayed = api.post(f"{URL}/{webhook_id}/replay", headers=admin)
        again = api.post(f"{URL}/{webhook_id}/replay", json={}, headers=admin)
        one_pass(ledger_url)

    assert (replayed.status_code, replayed.json(), again.json()) == (
        200,
        {"replayed": 2},
        {"replayed": 0},
    )
    assert len(receiver.ok()) == 2
    listed = api.get(f"{URL}/{webhook_id}/deliveries", headers=admin).json()["deliveries"]
    assert {d["status"] for d in listed} == {"delivered"}


def one_pass(ledger_url: str) -> None:
    from services import bootstrap
    from services.bootstrap import Settings

    settings = Settings(database_url=ledger_url, kill_switch_secret="x" * 40)
    dispatcher = bootstrap.webhook_dispatcher(settings, FakeClock(NOW))
    try:
        assert dispatcher.run_once().attempts > 0
    finally:
        dispatcher.close()


def test_replay_when_one_delivery_named_then_404_unknown_409_pending_200_dead(
    api: TestClient, admin: dict[str, str], ledger_url: str
) -> None:
    webhook_id = create(api, admin)["id"]
    other_id = create(api, admin)["id"]
    [first] = dead_letters(ledger_url, 1, webhook_id)
    path = f"{URL}/{webhook_id}/replay"

    ok = api.post(path, json={"delivery_id": first}, headers=admin)
    pending = api.post(path, json={"delivery_id": first}, headers=admin)
    unknown = api.post(path, json={"delivery_id": 10_000}, headers=admin)
    not_its = api.post(f"{URL}/{other_id}/replay", json={"delivery_id": first}, headers=admin)

    assert (ok.status_code, ok.json()) == (200, {"replayed": 1})
    assert pending.status_code == 409
    assert "pending" in pending.json()["detail"]
    assert (unknown.status_code, not_its.status_code) == (404, 404)


# -- the API's background dispatcher -----------------------------------------------------------


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running(now=lambda: NOW) as r:
        yield r


def test_lifespan_when_event_published_then_background_dispatcher_delivers_it_signed(
    ledger_url: str, admin: dict[str, str], receiver: Receiver
) -> None:
    with make_client(ledger_url) as api:
        created = create(api, admin, url=receiver.url, events=["safety"])
        receiver.secret = str(created["secret"])
        open_ledger(ledger_url).events.publish(EventKind.KILL_SWITCH, {"active": True}, NOW)
        [got] = receiver.wait_for(1)

    assert got.signature_error is None
    assert json.loads(got.body)["kind"] == "safety.kill_switch"


def test_lifespan_when_api_restarts_then_pending_retry_delivered_by_the_next_one(
    ledger_url: str, admin: dict[str, str], receiver: Receiver
) -> None:
    clock = FakeClock(NOW)
    receiver.answer(Answer.FAIL)
    with make_client(ledger_url, clock=clock) as api:
        create(api, admin, url=receiver.url, events=["*"])
        open_ledger(ledger_url).events.publish(EventKind.ORDER_CREATED, {}, NOW)
        receiver.wait_for(1)
    # the first API is gone; its delivery waits in the ledger for its retry time
    [webhook] = open_ledger(ledger_url).webhooks.subscriptions()
    [waiting] = open_ledger(ledger_url).webhooks.deliveries(webhook.subscription_id)
    assert (waiting.status, waiting.attempts, waiting.last_error) == (
        DeliveryStatus.PENDING,
        1,
        "HTTP 500",
    )

    clock.advance(minutes=1)
    with make_client(ledger_url, clock=clock):
        received = receiver.wait_for(2)

    assert [r.answer for r in received] == [Answer.FAIL, Answer.OK]
    [done] = open_ledger(ledger_url).webhooks.deliveries(webhook.subscription_id)
    assert (done.status, done.attempts) == (DeliveryStatus.DELIVERED, 2)
