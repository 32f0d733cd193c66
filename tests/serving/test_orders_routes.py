"""/api/v1/orders through the real app over the real ledger (SQLite and PostgreSQL) and the
real paper exchange: listing with filters and cursors, one order, a manual order with an
Idempotency-Key through the risk gate, and cancelling; scopes and bad input."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from core.clock import FakeClock
from core.orders import OrderEvent, OrderStatus
from core.risk.state import Control
from core.types import ClientOrderId
from infra.ledger.ledger import Ledger
from services.manual_orders import ManualConfig, ManualOrders
from serving.routes.orders import NotCancellableOut, OrderOut, OrdersPage, RefusedOut
from tests.infra.ledger.book import BTC, ETH, fill, place
from tests.services.test_manual_orders import LIMITS, CountingExchange
from tests.serving.conftest import NOW, make_client
from tests.serving.resources import (  # noqa: F401  fixtures, used by name
    api_fixture,
    conforms,
    every_page,
    ok,
    reader_fixture,
    stored_fixture,
    trader_fixture,
)

ROUTE = "/api/v1/orders"
BUY = {"symbol": "BTC/USDT", "side": "buy", "quantity": "0.02"}


def key(value: str) -> dict[str, str]:
    return {"Idempotency-Key": value}


@pytest.fixture
def listed(stored: Ledger) -> Ledger:
    """Seven orders an hour apart (two at the same time), the first three filled."""
    for i in range(7):
        at = NOW - timedelta(hours=10 - min(i, 5))
        order = place(stored, f"o-{i}", at, BTC if i % 2 else ETH, accepted=i != 6)
        if i < 3:
            fill(stored, order, "40000" if i % 2 else "2000", at + timedelta(minutes=1))
    return stored


def test_list_orders_when_paged_then_every_order_once_newest_first(
    api: TestClient, listed: Ledger, reader: dict[str, str]
) -> None:
    orders = every_page(api, ROUTE, reader, "orders", limit=3)
    assert [o["client_order_id"] for o in orders] == ["o-6", "o-5", "o-4", "o-3", "o-2", "o-1",
                                                      "o-0"]  # fmt: skip
    first = ok(api, ROUTE, reader, limit=3)
    conforms(OrdersPage, first)
    for o in first["orders"]:
        conforms(OrderOut, o)


def test_list_orders_when_filtered_then_status_symbol_and_since_apply(
    api: TestClient, listed: Ledger, reader: dict[str, str]
) -> None:
    def ids(**params: Any) -> list[str]:
        return [o["client_order_id"] for o in every_page(api, ROUTE, reader, "orders", **params)]

    assert ids(status="filled") == ["o-2", "o-1", "o-0"]
    assert ids(status="new") == ["o-6"]
    assert ids(symbol="BTC/USDT") == ["o-5", "o-3", "o-1"]
    assert ids(since=(NOW - timedelta(hours=6)).isoformat(), limit=1) == ["o-6", "o-5", "o-4"]
    assert ids(since="2026-11-24T08:00:00+02:00") == ["o-6", "o-5", "o-4"]  # the same instant


def test_list_orders_when_asked_again_after_a_change_then_the_change_shows_at_once(
    api: TestClient, listed: Ledger, reader: dict[str, str]
) -> None:
    before = ok(api, ROUTE, reader, limit=2)
    assert ok(api, ROUTE, reader, limit=2) == before  # nothing new: the same answer
    place(listed, "o-new", NOW)
    assert [o["client_order_id"] for o in ok(api, ROUTE, reader, limit=2)["orders"]] == [
        "o-new", "o-6"
    ]  # fmt: skip
    listed.orders.transition(ClientOrderId("o-6"), OrderEvent.SUBMIT, NOW)
    assert ok(api, ROUTE, reader, limit=2)["orders"][1]["status"] == "submitted"


def test_get_order_when_filled_then_its_fields_as_strings_and_404_when_unknown(
    api: TestClient, listed: Ledger, reader: dict[str, str]
) -> None:
    body = ok(api, f"{ROUTE}/o-1", reader)
    conforms(OrderOut, body)
    assert {k: body[k] for k in ("status", "quantity", "filled_quantity", "average_price",
                                 "origin", "side", "type", "broker", "symbol")} == {
        "status": "filled", "quantity": "0.01", "filled_quantity": "0.01",
        "average_price": "40000", "origin": "manual", "side": "buy", "type": "market",
        "broker": "paper", "symbol": "BTC/USDT",
    }  # fmt: skip
    listed_too = [o for o in ok(api, ROUTE, reader)["orders"] if o["client_order_id"] == "o-1"]
    assert listed_too == [body]  # a listing's line is the order's own answer
    for unknown in ("nope", "%00"):
        r = api.get(f"{ROUTE}/{unknown}", headers=reader)
        assert r.status_code == 404, r.text


@pytest.mark.parametrize(
    "params",
    [
        {"status": "bogus"},
        {"since": "yesterday"},
        {"since": "2026-11-24T10:00:00"},  # no offset: the ledger will not guess
        {"since": "9999-12-31T23:00:00-05:00"},  # past year 9999 in UTC
        {"cursor": "bm90LWEtY3Vyc29y"},
        {"cursor": "has spaces"},
        {"limit": 0},
        {"limit": 501},
        {"symbol": "BTCUSDT"},
    ],
)
def test_list_orders_when_a_parameter_is_bad_then_422_naming_it(
    api: TestClient, reader: dict[str, str], params: dict[str, Any]
) -> None:
    r = api.get(ROUTE, headers=reader, params=params)
    assert r.status_code == 422, r.text
    assert [e["loc"][-1] for e in r.json()["detail"]] == list(params)


def test_orders_when_no_token_then_401_on_every_operation(api: TestClient) -> None:
    answers = [api.get(ROUTE), api.get(f"{ROUTE}/x"), api.post(ROUTE, json=BUY, headers=key("k")),
               api.delete(f"{ROUTE}/x")]  # fmt: skip
    assert [r.status_code for r in answers] == [401] * 4
    assert all(r.headers["WWW-Authenticate"] == "Bearer" for r in answers)


def test_post_order_when_read_scope_only_then_403_and_nothing_recorded(
    api: TestClient, stored: Ledger, reader: dict[str, str]
) -> None:
    r = api.post(ROUTE, json=BUY, headers=reader | key("k-1"))
    assert r.status_code == 403, r.text
    assert stored.orders.find("paper") == []
    assert api.delete(f"{ROUTE}/anything", headers=reader).status_code == 403


def test_post_order_when_approved_then_201_a_manual_order_accepted_by_the_paper_exchange(
    api: TestClient, stored: Ledger, trader: dict[str, str]
) -> None:
    r = api.post(ROUTE, json=BUY, headers=trader | key("k-1"))
    assert r.status_code == 201, r.text
    body = r.json()
    conforms(OrderOut, body)
    assert (body["origin"], body["status"], body["quantity"], body["submit_attempts"]) == (
        "manual", "accepted", "0.02", 1
    )  # fmt: skip
    assert body["client_order_id"].startswith("tf-m-")
    assert "Idempotent-Replayed" not in r.headers
    assert [o.client_order_id for o in stored.orders.find("paper")] == [body["client_order_id"]]


def test_post_order_when_the_same_key_again_then_200_the_same_order_never_a_second(
    api: TestClient, stored: Ledger, trader: dict[str, str]
) -> None:
    first = api.post(ROUTE, json=BUY, headers=trader | key("k-1"))
    again = api.post(ROUTE, json=BUY | {"quantity": 0.020}, headers=trader | key("k-1"))
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert len(stored.orders.find("paper")) == 1


def test_post_order_when_many_clients_send_one_key_at_once_then_one_order_at_the_exchange(
    api: TestClient, stored: Ledger, trader: dict[str, str]
) -> None:
    n = 6
    start = threading.Barrier(n)
    answers: list[tuple[int, str]] = []

    def post() -> None:
        start.wait()
        r = api.post(ROUTE, json=BUY, headers=trader | key("k-same"))
        answers.append((r.status_code, r.json().get("client_order_id", r.text)))

    threads = [threading.Thread(target=post) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert sorted(status for status, _ in answers) == [200] * (n - 1) + [201]
    assert len({coid for _, coid in answers}) == 1
    assert len(stored.orders.find("paper")) == 1
    paper = api.app.state.manual_orders.broker  # type: ignore[attr-defined]
    assert [o.client_order_id for o in paper.open_orders()] == [answers[0][1]]


def test_post_order_when_the_broker_loses_the_answer_then_503_and_a_later_retry_finds_it(
    ledger_url: str, stored: Ledger, trader: dict[str, str]
) -> None:
    clock = FakeClock(NOW)
    exchange = CountingExchange()
    exchange.lose_answers = 1
    config = ManualConfig("paper", "binance", "1h", (BTC, ETH), LIMITS)
    with make_client(ledger_url, clock=clock) as client:
        state = client.app.state  # type: ignore[attr-defined]
        state.manual_orders = ManualOrders(stored, lambda: exchange, config)
        lost = client.post(ROUTE, json=BUY, headers=trader | key("k-1"))
        assert (lost.status_code, lost.headers["Retry-After"]) == (503, "30")
        early = client.post(ROUTE, json=BUY, headers=trader | key("k-1"))
        assert (early.status_code, early.json()["status"]) == (200, "new")  # not sent again
        clock.advance(seconds=31)
        found = client.post(ROUTE, json=BUY, headers=trader | key("k-1"))
    assert (found.status_code, found.json()["status"]) == (200, "accepted")
    assert exchange.places == 1


def test_post_order_when_the_same_key_with_another_order_then_409(
    api: TestClient, stored: Ledger, trader: dict[str, str]
) -> None:
    api.post(ROUTE, json=BUY, headers=trader | key("k-1"))
    r = api.post(ROUTE, json=BUY | {"side": "sell"}, headers=trader | key("k-1"))
    assert r.status_code == 409, r.text
    assert "already placed order" in r.json()["detail"]
    assert len(stored.orders.find("paper")) == 1


@pytest.mark.parametrize(
    "headers",
    [{}, key(""), key("x" * 256), {"Idempotency-Key": "caf\u00e9".encode("latin-1")}],
)
def test_post_order_when_no_usable_idempotency_key_then_400(
    api: TestClient, stored: Ledger, trader: dict[str, str], headers: dict[str, Any]
) -> None:
    r = api.post(ROUTE, json=BUY, headers=trader | headers)
    assert r.status_code == 400, r.text
    assert "Idempotency-Key" in r.json()["detail"]
    assert stored.orders.find("paper") == []


def test_post_order_when_kill_switch_active_then_422_with_denial_codes_and_nothing_sent(
    api: TestClient, stored: Ledger, trader: dict[str, str]
) -> None:
    stored.safety.set_control(Control.KILL_SWITCH, True, "ops drill", NOW)
    r = api.post(ROUTE, json=BUY, headers=trader | key("k-1"))
    assert r.status_code == 422, r.text
    conforms(RefusedOut, r.json())
    assert [d["code"] for d in r.json()["denials"]] == ["TRADING_HALTED"]
    assert stored.orders.find("paper") == []


@pytest.mark.parametrize(
    "order",
    [
        BUY | {"type": "limit"},  # no limit price
        BUY | {"limit_price": "40000"},  # a market order with one
        BUY | {"quantity": "-1"},
        BUY | {"quantity": "NaN"},
        BUY | {"quantity": "1e-19"},
        BUY | {"symbol": "BTC"},
        BUY | {"side": "short"},
        BUY | {"leverage": 3},
        {"symbol": "BTC/USDT"},
    ],
)
def test_post_order_when_the_body_is_bad_then_422_and_nothing_recorded(
    api: TestClient, stored: Ledger, trader: dict[str, str], order: dict[str, Any]
) -> None:
    r = api.post(ROUTE, json=order, headers=trader | key("k-1"))
    assert r.status_code == 422, r.text
    assert stored.orders.find("paper") == []


def test_delete_order_when_accepted_then_cancelled_and_409_the_second_time(
    api: TestClient, stored: Ledger, trader: dict[str, str]
) -> None:
    placed = api.post(ROUTE, json=BUY, headers=trader | key("k-1")).json()
    r = api.delete(f"{ROUTE}/{placed['client_order_id']}", headers=trader)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "cancelled"
    again = api.delete(f"{ROUTE}/{placed['client_order_id']}", headers=trader)
    assert again.status_code == 409
    conforms(NotCancellableOut, again.json())
    assert again.json()["status"] == "cancelled"
    order = stored.orders.get(placed["client_order_id"])
    assert order is not None
    assert order.status is OrderStatus.CANCELLED
    assert api.delete(f"{ROUTE}/nope", headers=trader).status_code == 404


def test_openapi_when_read_then_the_order_body_key_header_and_answers_are_declared(
    api: TestClient,
) -> None:
    spec = api.get("/openapi.json").json()
    post = spec["paths"][ROUTE]["post"]
    assert post["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/OrderIn")
    assert [(p["name"], p["in"]) for p in post["parameters"]] == [("Idempotency-Key", "header")]
    assert {"200", "201", "400", "401", "403", "409", "422"} <= set(post["responses"])
    assert "Idempotent-Replayed" in post["responses"]["200"]["headers"]
    listing = spec["paths"][ROUTE]["get"]
    assert {p["name"] for p in listing["parameters"]} == {"status", "symbol", "since", "limit",
                                                          "cursor"}  # fmt: skip
    assert set(spec["paths"][f"{ROUTE}/{{client_order_id}}"]) == {"get", "delete"}


def test_post_order_when_numbers_have_more_digits_than_a_float_then_read_exactly(
    api: TestClient, stored: Ledger, trader: dict[str, str]
) -> None:
    """JSON numbers are read as decimals: the gate judges the limit price as sent (a float
    would have rounded it to 39999.12345678901, hiding the sub-tick digits), and too many
    decimals are refused rather than rounded into range."""
    fine_price = '{"symbol": "BTC/USDT", "side": "buy", "quantity": 0.02, "type": "limit", ' \
        '"limit_price": 39999.123456789012345}'  # fmt: skip
    too_fine = '{"symbol": "BTC/USDT", "side": "buy", ' \
        '"quantity": 0.1000000000000000055511151231257827}'  # fmt: skip
    headers = trader | {"Content-Type": "application/json"}

    judged = api.post(ROUTE, content=fine_price, headers=headers | key("exact"))
    refused = api.post(ROUTE, content=too_fine, headers=headers | key("fine"))

    assert judged.status_code == 422
    assert [d["code"] for d in judged.json()["denials"]] == ["PRICE_PRECISION"]
    assert "39999.123456789012345 is not a multiple of 0.01" in judged.text
    assert refused.status_code == 422
    assert "decimal" in refused.text.lower()
    assert stored.orders.find("paper") == []
