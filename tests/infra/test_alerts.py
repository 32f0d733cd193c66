"""Alerts go out through apprise's real json:// and form:// notifiers to a loopback HTTP
receiver: routed by severity, debounced in the ledger (one alert, then one summary)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs

import pytest

from core.alerts import Severity
from core.clock import FakeClock
from infra.alerts import Alerts
from infra.ledger.ledger import Ledger, open_ledger
from tests.webhook_receiver import Receiver, free_port, running

NOW = datetime(2026, 11, 24, 12, tzinfo=UTC)
WINDOW = timedelta(minutes=5)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running() as r:
        yield r


@pytest.fixture
def other() -> Iterator[Receiver]:
    with running() as r:
        yield r


def json_url(receiver: Receiver, path: str = "alerts") -> str:
    return receiver.url.replace("http://", "json://").replace("/hook", f"/{path}")


def messages(receiver: Receiver) -> list[dict[str, str]]:
    return [json.loads(r.body) for r in receiver.received]


DOWN = "tradeflow exchange down"


def test_send_when_apprise_url_configured_then_webhook_receives_title_and_body(
    receiver: Receiver,
) -> None:
    assert Alerts([json_url(receiver)]).send("tradeflow kill switch ACTIVE", "cancelled 3 orders")
    [message] = messages(receiver)
    assert message["title"] == "tradeflow kill switch ACTIVE"
    assert message["message"] == "cancelled 3 orders"


def test_send_when_notifier_unreachable_then_false_logged_and_no_exception(
    caplog: pytest.LogCaptureFixture,
) -> None:
    alerts = Alerts([f"json://127.0.0.1:{free_port()}/nowhere"])
    assert alerts.send("t", "b") is False
    assert alerts.sent == [("t", "b")]
    assert "ALERT t: b [warning]" in caplog.text


def test_send_when_routes_by_severity_then_each_goes_to_its_route_and_the_common_urls(
    receiver: Receiver, other: Receiver
) -> None:
    common = json_url(receiver, "all")
    alerts = Alerts([common], routes={"critical": [json_url(other, "pager")], "info": []})

    alerts.send("tradeflow circuit breaker TRIPPED", "drawdown 16 %", severity=Severity.CRITICAL)
    alerts.send("tradeflow has no fresh candle", "is ingestion running?")  # warning: the default
    alerts.send("nightly report", "ok", severity="info")

    assert [(r.path, json.loads(r.body)["type"]) for r in other.received] == [("/pager", "failure")]
    assert [json.loads(r.body)["type"] for r in receiver.received] == [
        "failure",
        "warning",
        "info",
    ]


def test_send_when_form_url_then_posted_as_a_form(receiver: Receiver) -> None:
    url = receiver.url.replace("http://", "form://")

    assert Alerts([url]).send("tradeflow drift", "feature rsi_14 drifted", severity=Severity.INFO)

    [got] = receiver.received
    form = parse_qs(got.body.decode())
    assert (form["title"], form["message"]) == (["tradeflow drift"], ["feature rsi_14 drifted"])


def test_send_when_unknown_severity_then_value_error() -> None:
    with pytest.raises(ValueError, match="urgent"):
        Alerts().send("t", "b", severity="urgent")


def test_send_when_repeated_ten_times_then_one_alert_then_one_summary(
    ledger: Ledger, receiver: Receiver
) -> None:
    clock = FakeClock(NOW)
    alerts = Alerts([json_url(receiver)], states=ledger.alerts, debounce=WINDOW, clock=clock)

    for i in range(10):
        assert alerts.send("tradeflow exchange down", f"timeout #{i + 1}")
        clock.advance(seconds=10)
    assert alerts.flush() == 0  # the window is not over
    clock.advance(minutes=5)
    assert alerts.flush() == 1
    assert alerts.flush() == 0

    assert [(m["title"], m["message"]) for m in messages(receiver)] == [
        ("tradeflow exchange down", "timeout #1"),
        ("tradeflow exchange down (repeated 9 times since 2026-11-24 12:00:00 UTC)", "timeout #10"),
    ]
    assert len(alerts.sent) == 10  # every occurrence is still logged


def test_send_when_another_process_and_a_restart_share_the_ledger_then_debounce_is_shared(
    ledger_url: str, receiver: Receiver
) -> None:
    clock = FakeClock(NOW)

    def process() -> Alerts:  # a process of its own: its own Alerts over the same ledger
        led = open_ledger(ledger_url)
        return Alerts([json_url(receiver)], states=led.alerts, debounce=WINDOW, clock=clock)

    process().send(DOWN, "timeout #1")
    process().send(DOWN, "timeout #2")
    clock.advance(minutes=6)
    restarted = process()
    restarted.send(DOWN, "timeout #3")

    titles = [m["title"] for m in messages(receiver)]
    assert titles == [DOWN, f"{DOWN} (repeated 1 times since 2026-11-24 12:00:00 UTC)"]
    assert {m["type"] for m in messages(receiver)} == {"warning"}


def test_send_when_critical_repeats_within_the_window_then_each_is_sent(
    ledger: Ledger, receiver: Receiver
) -> None:
    """Halting alerts are news every time: ACTIVE, released, ACTIVE again within the window
    must not leave "released" as the operator's last word."""
    clock = FakeClock(NOW)
    alerts = Alerts([json_url(receiver)], states=ledger.alerts, debounce=WINDOW, clock=clock)

    for title in ("tradeflow kill switch ACTIVE", "tradeflow kill switch released") * 2:
        alerts.send(title, "drill", severity=Severity.CRITICAL)
        clock.advance(seconds=30)

    assert [m["title"] for m in messages(receiver)][-1] == "tradeflow kill switch released"
    assert len(messages(receiver)) == 4
    assert {m["type"] for m in messages(receiver)} == {"failure"}


def test_send_when_key_given_then_debounced_by_key_not_title(
    ledger: Ledger, receiver: Receiver
) -> None:
    alerts = Alerts(
        [json_url(receiver)], states=ledger.alerts, debounce=WINDOW, clock=FakeClock(NOW)
    )

    alerts.send("webhook 1 failing: HTTP 500", "a", key="webhook-1")
    alerts.send("webhook 1 failing: HTTP 502", "b", key="webhook-1")
    alerts.send("webhook 2 failing: HTTP 500", "c", key="webhook-2")

    assert [m["message"] for m in messages(receiver)] == ["a", "c"]


def test_send_when_ledger_down_then_alert_still_sent_undebounced(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    down = open_ledger(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/x", migrated=False)
    alerts = Alerts([json_url(receiver)], states=down.alerts, debounce=WINDOW)

    assert alerts.send("tradeflow kill switch ACTIVE", "reason: drill")

    assert [m["title"] for m in messages(receiver)] == ["tradeflow kill switch ACTIVE"]
    assert "alert debounce unavailable" in caplog.text
