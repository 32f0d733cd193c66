"""Alert debounce: one alert, repeats counted, then one summary (core/alerts.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from core.alerts import (
    MAX_KEY_LENGTH,
    Alert,
    Severity,
    alert_key,
    debounce,
    due_summary,
    summary_title,
)

NOW = datetime(2026, 11, 24, 12, tzinfo=UTC)
WINDOW = timedelta(minutes=5)
ALERT = Alert("exchange down", "timeout #1", Severity.WARNING, "exchange down")


def test_debounce_when_first_occurrence_then_sent() -> None:
    state, notice = debounce(None, ALERT, NOW, WINDOW)
    assert notice is not None
    assert (notice.title, notice.body, notice.repeats) == ("exchange down", "timeout #1", 0)
    assert (state.last_sent_at, state.suppressed) == (NOW, 0)


def test_debounce_when_repeated_within_window_then_counted_not_sent() -> None:
    state, _ = debounce(None, ALERT, NOW, WINDOW)
    for n in range(1, 4):
        later = Alert(ALERT.title, f"timeout #{n + 1}", Severity.CRITICAL, ALERT.key)
        state, notice = debounce(state, later, NOW + timedelta(minutes=n), WINDOW)
        assert notice is None
    assert (state.suppressed, state.last_body, state.severity) == (3, "timeout #4", "critical")
    assert state.last_sent_at == NOW


def test_debounce_when_occurring_after_window_with_repeats_then_one_summary() -> None:
    state, _ = debounce(None, ALERT, NOW, WINDOW)
    state, _ = debounce(state, ALERT, NOW + timedelta(minutes=1), WINDOW)
    state, _ = debounce(state, ALERT, NOW + timedelta(minutes=2), WINDOW)
    state, notice = debounce(state, ALERT, NOW + WINDOW, WINDOW)
    assert notice is not None
    assert notice.title == "exchange down (repeated 2 times since 2026-11-24 12:00:00 UTC)"
    assert notice.repeats == 2
    assert (state.suppressed, state.last_sent_at) == (0, NOW + WINDOW)


def test_debounce_when_occurring_after_window_without_repeats_then_plain_alert() -> None:
    state, _ = debounce(None, ALERT, NOW, WINDOW)
    _, notice = debounce(state, ALERT, NOW + timedelta(hours=1), WINDOW)
    assert notice is not None
    assert notice.title == "exchange down"


def test_debounce_when_window_zero_then_every_occurrence_sent() -> None:
    state, _ = debounce(None, ALERT, NOW, timedelta(0))
    _, notice = debounce(state, ALERT, NOW, timedelta(0))
    assert notice is not None


def test_due_summary_when_window_not_over_or_no_repeats_then_none() -> None:
    state, _ = debounce(None, ALERT, NOW, WINDOW)
    assert due_summary(state, NOW + WINDOW, WINDOW) is None  # nothing repeated
    state, _ = debounce(state, ALERT, NOW + timedelta(minutes=1), WINDOW)
    assert due_summary(state, NOW + timedelta(minutes=4), WINDOW) is None


def test_due_summary_when_window_over_with_repeats_then_summary_and_new_window() -> None:
    state, _ = debounce(None, ALERT, NOW, WINDOW)
    state, _ = debounce(state, ALERT, NOW + timedelta(minutes=1), WINDOW)
    due = due_summary(state, NOW + WINDOW, WINDOW)
    assert due is not None
    after, notice = due
    assert notice.title == summary_title("exchange down", 1, NOW)
    assert (after.suppressed, after.last_sent_at) == (0, NOW + WINDOW)


def test_alert_key_when_longer_than_column_then_cut_with_hash_and_still_distinct() -> None:
    a, b = "x" * 200 + "a", "x" * 200 + "b"
    assert len(alert_key(a)) == MAX_KEY_LENGTH
    assert alert_key(a) != alert_key(b)
    assert alert_key("short") == "short"
