"""Alerts through apprise (Slack, Telegram, e-mail, ntfy, a JSON webhook… any apprise URL), by
severity and debounced.

Severity routing: an alert goes to TRADEFLOW_ALERT_ROUTES[severity] plus TRADEFLOW_ALERT_URLS
(every severity). Debounce (core.alerts): per key (the title unless given), the first occurrence
is sent, repeats within TRADEFLOW_ALERT_DEBOUNCE_S are counted, and the next occurrence after the
window, or `flush` (the API's background loop calls it), sends one summary "<title> (repeated N
times since …)". The state is the ledger's, so every process shares it and a restart keeps it.

Every alert is also logged; a notifier that fails, or a ledger that does not answer, is logged
too and never stops the caller: the safety action an alert reports has already happened, and an
alert whose debounce cannot be read is sent rather than lost.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

import apprise

from core.alerts import Alert, Notice, Severity, alert_key
from core.clock import Clock, SystemClock
from core.ports import AlertStateStore

log = logging.getLogger("tradeflow.alerts")

NOTIFY_TYPE: Mapping[Severity, apprise.NotifyType] = {
    Severity.CRITICAL: apprise.NotifyType.FAILURE,
    Severity.WARNING: apprise.NotifyType.WARNING,
    Severity.INFO: apprise.NotifyType.INFO,
}


class Alerts:
    def __init__(
        self,
        urls: Sequence[str] = (),
        *,
        routes: Mapping[str, Sequence[str]] | None = None,
        states: AlertStateStore | None = None,
        debounce: timedelta = timedelta(0),
        clock: Clock | None = None,
    ) -> None:
        """`urls` receive every severity, `routes[severity]` theirs; without `states` or with
        no `debounce` window every alert is sent."""
        self.urls = tuple(urls)
        self.routes = {Severity(k): tuple(v) for k, v in (routes or {}).items()}
        self.states = states
        self.debounce = debounce
        self.clock = clock or SystemClock()
        self.sent: list[tuple[str, str]] = []  # what this process raised, newest last

    def urls_for(self, severity: Severity) -> tuple[str, ...]:
        return tuple(dict.fromkeys((*self.routes.get(severity, ()), *self.urls)))

    def send(
        self,
        title: str,
        body: str,
        *,
        severity: Severity | str = Severity.WARNING,
        key: str | None = None,
    ) -> bool:
        """Log, debounce and notify; True when every notifier it went to accepted it (or it
        was counted as a repeat, to be summarised)."""
        level = Severity(severity)
        log.warning("ALERT %s: %s [%s]", title, body, level.value)
        self.sent.append((title, body))
        notice = self._debounced(Alert(title, body, level, alert_key(key or title)))
        if notice is None:
            log.info("alert %r repeated within the debounce window: counted", title)
            return True
        return self._notify(notice)

    def flush(self, now: datetime | None = None) -> int:
        """Send the summaries whose debounce window has ended; returns how many."""
        if self.states is None or self.debounce <= timedelta(0):
            return 0
        notices = self.states.flush(now or self.clock.now(), self.debounce)
        for notice in notices:
            self._notify(notice)
        return len(notices)

    def _debounced(self, alert: Alert) -> Notice | None:
        """The notice to send now, or None for a repeat within the window. Critical alerts
        are never held back: "kill switch ACTIVE" again after "released" is news, whatever
        the window."""
        fallback = Notice(alert.title, alert.body, alert.severity, alert.key)
        if self.states is None or self.debounce <= timedelta(0):
            return fallback
        if alert.severity is Severity.CRITICAL:
            return fallback
        try:
            return self.states.occur(alert, self.clock.now(), self.debounce)
        except Exception:  # the ledger down (or not migrated): send rather than lose it
            log.exception("alert debounce unavailable: sending %r undebounced", alert.title)
            return fallback

    def _notify(self, notice: Notice) -> bool:
        urls = self.urls_for(notice.severity)
        if not urls:
            return True
        notifier = apprise.Apprise()
        for url in urls:
            if not notifier.add(url):
                log.error("alert URL refused by apprise: %s", url.split("://", 1)[0] + "://…")
        try:
            ok = bool(
                notifier.notify(
                    title=notice.title, body=notice.body, notify_type=NOTIFY_TYPE[notice.severity]
                )
            )
        except Exception:  # a notifier's failure must not undo the safety action
            log.exception("alert delivery failed")
            return False
        if not ok:
            log.error("alert delivery failed for at least one notifier")
        return ok
