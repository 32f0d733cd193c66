"""Alert debounce state in the ledger (SQLite and PostgreSQL): shared, kept, and raced safely."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from core.alerts import Alert, Severity
from infra.ledger.ledger import Ledger

NOW = datetime(2026, 11, 24, 12, tzinfo=UTC)
WINDOW = timedelta(minutes=5)
ALERT = Alert("tradeflow exchange down", "timeout", Severity.WARNING, "tradeflow exchange down")


def at_once(workers: int, work: Callable[[], object]) -> list[object]:
    barrier = threading.Barrier(workers)
    results: list[object] = []
    errors: list[BaseException] = []

    def run() -> None:
        barrier.wait()
        try:
            results.append(work())
        except BaseException as exc:  # surfaced in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    return results


def test_occur_when_repeated_within_window_then_first_sent_and_rest_counted(
    ledger: Ledger,
) -> None:
    first = ledger.alerts.occur(ALERT, NOW, WINDOW)
    repeats = [ledger.alerts.occur(ALERT, NOW + timedelta(seconds=i), WINDOW) for i in range(9)]

    assert first is not None
    assert first.title == ALERT.title
    assert repeats == [None] * 9
    state = ledger.alerts.get(ALERT.key)
    assert state is not None
    assert (state.suppressed, state.last_sent_at, state.first_at) == (9, NOW, NOW)
    assert state.last_seen_at == NOW + timedelta(seconds=8)


def test_occur_when_after_window_then_summary_with_count(ledger: Ledger) -> None:
    ledger.alerts.occur(ALERT, NOW, WINDOW)
    ledger.alerts.occur(ALERT, NOW + timedelta(minutes=1), WINDOW)

    notice = ledger.alerts.occur(ALERT, NOW + WINDOW, WINDOW)

    assert notice is not None
    assert notice.title.startswith("tradeflow exchange down (repeated 1 times since")
    assert ledger.alerts.get(ALERT.key).suppressed == 0  # type: ignore[union-attr]


def test_occur_when_four_processes_raise_a_new_alert_at_once_then_sent_once(
    ledger: Ledger,
) -> None:
    notices = at_once(4, lambda: ledger.alerts.occur(ALERT, NOW, WINDOW))

    assert sum(n is not None for n in notices) == 1
    assert ledger.alerts.get(ALERT.key).suppressed == 3  # type: ignore[union-attr]


def test_flush_when_window_over_then_one_summary_even_if_flushed_at_once(ledger: Ledger) -> None:
    ledger.alerts.occur(ALERT, NOW, WINDOW)
    ledger.alerts.occur(ALERT, NOW + timedelta(seconds=1), WINDOW)
    assert ledger.alerts.flush(NOW + timedelta(minutes=4), WINDOW) == []

    flushed = at_once(4, lambda: ledger.alerts.flush(NOW + WINDOW, WINDOW))

    summaries = [n for batch in flushed for n in batch]  # type: ignore[attr-defined]
    assert len(summaries) == 1
    assert summaries[0].repeats == 1
    assert ledger.alerts.flush(NOW + 3 * WINDOW, WINDOW) == []  # nothing repeated since
