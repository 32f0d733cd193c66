"""Alerts through apprise (Slack, Telegram, e-mail, ntfy, a JSON webhook… any apprise URL).

Every alert is also logged; a notifier that fails is logged too and never stops the caller:
the safety action an alert reports has already happened.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import apprise

log = logging.getLogger("tradeflow.alerts")


class Alerts:
    def __init__(self, urls: Sequence[str] = ()) -> None:
        self.urls = tuple(urls)
        self.sent: list[tuple[str, str]] = []  # what this process raised, newest last

    def send(self, title: str, body: str) -> bool:
        """Log and notify; True when every configured notifier accepted it."""
        log.warning("ALERT %s: %s", title, body)
        self.sent.append((title, body))
        if not self.urls:
            return True
        notifier = apprise.Apprise()
        for url in self.urls:
            if not notifier.add(url):
                log.error("alert URL refused by apprise: %s", url.split("://", 1)[0] + "://…")
        try:
            ok = bool(notifier.notify(title=title, body=body))
        except Exception:  # a notifier's failure must not undo the safety action
            log.exception("alert delivery failed")
            return False
        if not ok:
            log.error("alert delivery failed for at least one notifier")
        return ok
