"""Alert severity and debounce: a repeating failure sends one alert, then one summary.

The first occurrence of an alert (by key, the title unless told otherwise) is sent. Repeats
within the debounce window are counted, not sent. The first occurrence after the window, or a
flush after it with repeats counted, sends one summary "<title> (repeated N times since …)" and
opens a new window. The state is the ledger's (shared by every process, kept over restarts);
this module only decides.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

MAX_KEY_LENGTH = 128  # the ledger's column


class Severity(StrEnum):
    """Most urgent first; each routes to its own notifiers (TRADEFLOW_ALERT_ROUTES)."""

    CRITICAL = "critical"
    WARNING = "warning"
    INFO = "info"


@dataclass(frozen=True, slots=True)
class Alert:
    title: str
    body: str
    severity: Severity
    key: str


@dataclass(frozen=True, slots=True)
class AlertState:
    """One key's debounce: when it was last sent, how often it repeated since, and the last
    repeat's text (what a flushed summary says)."""

    key: str
    severity: Severity
    first_at: datetime
    last_seen_at: datetime
    last_sent_at: datetime | None
    suppressed: int
    last_title: str
    last_body: str


@dataclass(frozen=True, slots=True)
class Notice:
    """What goes out to the notifiers now."""

    title: str
    body: str
    severity: Severity
    key: str
    repeats: int = 0  # occurrences a summary stands for (0: a first alert)


def alert_key(key: str) -> str:
    """The key as stored: a long one is cut and given its hash, so two long titles that share
    a beginning stay two keys."""
    if len(key) <= MAX_KEY_LENGTH:
        return key
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    return f"{key[: MAX_KEY_LENGTH - 33]}#{digest}"


def summary_title(title: str, repeats: int, since: datetime) -> str:
    return f"{title} (repeated {repeats} times since {since:%Y-%m-%d %H:%M:%S} UTC)"


def debounce(
    state: AlertState | None, alert: Alert, now: datetime, window: timedelta
) -> tuple[AlertState, Notice | None]:
    """The key's next state after `alert` occurred at `now`, and what to send (None: counted
    as a repeat inside the window)."""
    if state is None or state.last_sent_at is None:
        fresh = AlertState(alert.key, alert.severity, now, now, now, 0, alert.title, alert.body)
        return fresh, Notice(alert.title, alert.body, alert.severity, alert.key)
    if now < state.last_sent_at + window:
        repeated = replace(
            state,
            severity=alert.severity,
            last_seen_at=now,
            suppressed=state.suppressed + 1,
            last_title=alert.title,
            last_body=alert.body,
        )
        return repeated, None
    title = alert.title
    if state.suppressed:
        title = summary_title(alert.title, state.suppressed, state.last_sent_at)
    sent = replace(
        state,
        severity=alert.severity,
        last_seen_at=now,
        last_sent_at=now,
        suppressed=0,
        last_title=alert.title,
        last_body=alert.body,
    )
    return sent, Notice(title, alert.body, alert.severity, alert.key, state.suppressed)


def due_summary(
    state: AlertState, now: datetime, window: timedelta
) -> tuple[AlertState, Notice] | None:
    """A flush: the summary of the repeats counted in a window that has ended, if any."""
    if not state.suppressed or state.last_sent_at is None or now < state.last_sent_at + window:
        return None
    title = summary_title(state.last_title, state.suppressed, state.last_sent_at)
    notice = Notice(title, state.last_body, state.severity, state.key, state.suppressed)
    return replace(state, last_sent_at=now, suppressed=0), notice
