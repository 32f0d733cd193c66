"""The webhook dispatcher: outbox events to signed HTTP deliveries, retried, then dead-lettered.

One pass (`run_once`): fan the outbox's new events out into pending deliveries, claim the due
ones (never one another dispatcher holds), send them in parallel, each signed at its send time,
and record each attempt: a 2xx is delivered; anything else (no answer, a timeout, 3xx, 4xx, 5xx)
is retried after exponential backoff with jitter, until the last attempt leaves it dead with its
last error (`POST /api/v1/webhooks/{id}/replay` sends it again). Everything is in the ledger, so
a restarted API (or another worker) goes on where this one stopped; a delivery whose sender died
mid-attempt is claimed again when its lease ends. Delivery is at least once: receivers use the
`Tradeflow-Delivery` header to drop a repeat. Order is not kept across retries.

The API runs it in the background (serving/background.py); the same pass flushes the alerts'
due summaries.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from core.alerts import Severity
from core.clock import Clock
from core.ports import EventLog, Notifier, WebhookSender, WebhookStore
from core.webhooks import (
    Backoff,
    DeliveryStatus,
    NotReplayable,
    Outcome,
    Outgoing,
    Rng,
    SendFailed,
    Subscription,
    UnknownDelivery,
    UnknownSubscription,
    check_url,
    outcome_of,
    parse_patterns,
    request_for,
    settled_position,
)

log = logging.getLogger("tradeflow.webhooks")


class Alerting(Notifier, Protocol):
    """infra.alerts.Alerts as the dispatcher uses it: a Notifier whose debounced repeats
    are summarised by `flush`."""

    def flush(self, now: datetime | None = None) -> int: ...


@dataclass(frozen=True, slots=True)
class DispatchConfig:
    max_attempts: int = 8
    backoff: Backoff = field(default_factory=Backoff)
    timeout_s: float = 5.0
    parallel: int = 8  # deliveries claimed, and sent at once, per pass
    fan_out_batch: int = 500  # outbox events read per fan-out step
    fan_out_steps: int = 20  # per pass, so one pass stays short behind a large backlog

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.parallel < 1 or self.timeout_s <= 0:
            raise ValueError(f"bad dispatch config {self}")

    @property
    def lease(self) -> timedelta:
        """How long a claimed delivery is left to its sender: well past one attempt (every
        claimed delivery of a pass is sent at once), after which another may claim it."""
        return timedelta(seconds=4 * self.timeout_s + 30)


@dataclass(frozen=True, slots=True)
class DispatchReport:
    fanned_out: int = 0
    delivered: int = 0
    retried: int = 0
    dead: int = 0
    lost: int = 0  # results not recorded: the lease ran out and another dispatcher took over
    summaries: int = 0  # alert summaries flushed
    more: bool = False  # a full batch was claimed: more may be due at once

    @property
    def attempts(self) -> int:
        return self.delivered + self.retried + self.dead + self.lost


class WebhookDispatcher:
    def __init__(
        self,
        events: EventLog,
        webhooks: WebhookStore,
        sender: WebhookSender,
        config: DispatchConfig,
        clock: Clock,
        rng: Rng,
        alerts: Alerting | None = None,
    ) -> None:
        self.events, self.webhooks, self.sender = events, webhooks, sender
        self.config, self.clock, self.rng, self.alerts = config, clock, rng, alerts
        self._pool = ThreadPoolExecutor(config.parallel, thread_name_prefix="webhook")

    def run_once(self, now: datetime | None = None) -> DispatchReport:
        """One pass at `now` (the clock's when not given): fan out, claim, send in parallel,
        record every result in one transaction (each at the time its attempt ended)."""
        now = now or self.clock.now()
        fanned = self.fan_out(now)
        claimed = self.webhooks.claim_due(now, self.config.parallel, self.config.lease)
        results = list(self._pool.map(self._attempt, claimed))
        recorded = self.webhooks.record_all(results) if results else set()
        for outgoing, outcome, _ in results:
            if outcome.status is DeliveryStatus.DEAD and outgoing.delivery.delivery_id in recorded:
                self._dead_letter(outgoing, outcome)
        summaries = self.alerts.flush(now) if self.alerts is not None else 0
        done = [o.status for g, o, _ in results if g.delivery.delivery_id in recorded]
        return DispatchReport(
            fanned_out=fanned,
            delivered=done.count(DeliveryStatus.DELIVERED),
            retried=done.count(DeliveryStatus.PENDING),
            dead=done.count(DeliveryStatus.DEAD),
            lost=len(results) - len(done),
            summaries=summaries,
            more=len(claimed) >= self.config.parallel,
        )

    def fan_out(self, now: datetime) -> int:
        """Deliveries for the outbox's events past the cursor (none before a subscription was
        ever made: nobody to deliver to)."""
        cursor, created = self.webhooks.cursor(), 0
        if cursor is None:
            return 0
        settled = cursor
        for _ in range(self.config.fan_out_steps):
            events = self.events.after(cursor, self.config.fan_out_batch)
            if not events:
                break
            if settled == cursor:  # no gap waited for yet: the cursor may move on
                settled = settled_position(cursor, events, now)
            created += self.webhooks.fan_out(events, now, settled)
            cursor = events[-1].event_id
        return created

    def _attempt(self, outgoing: Outgoing) -> tuple[Outgoing, Outcome, datetime]:
        body, headers = request_for(outgoing, self.clock.now())
        code: int | None = None
        error: str | None = None
        try:
            code = self.sender.send(outgoing.url, body, headers, self.config.timeout_s)
        except SendFailed as exc:
            error = str(exc)
        cfg, now = self.config, self.clock.now()
        attempts = outgoing.delivery.attempts
        outcome = outcome_of(attempts, cfg.max_attempts, code, error, now, cfg.backoff, self.rng)
        return outgoing, outcome, now

    def _dead_letter(self, outgoing: Outgoing, outcome: Outcome) -> None:
        sub, delivery = outgoing.delivery.subscription_id, outgoing.delivery.delivery_id
        log.warning("webhook %s delivery %s dead: %s", sub, delivery, outcome.error)
        if self.alerts is not None:  # one alert per subscription, then a summary (debounced)
            self.alerts.send(
                f"tradeflow webhook {sub} dead-lettered a delivery",
                f"delivery {delivery} of event {outgoing.event.event_id} "
                f"({outgoing.event.kind.value}) to {outgoing.url} failed "
                f"{outgoing.delivery.attempts} times; last error: {outcome.error}",
                severity=Severity.WARNING,
            )

    def close(self) -> None:
        """Wait for the sends under way, then release the threads (and the sender's
        connections, when it has any)."""
        self._pool.shutdown(wait=True)
        close = getattr(self.sender, "close", None)
        if close is not None:
            close()


# -- managing subscriptions (the API's admin routes) ------------------------------------------

SECRET_PREFIX = "whsec_"


def new_secret() -> str:
    """256 random bits, URL-safe: what a subscription is signed with unless one is given."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def subscribe(
    store: WebhookStore,
    url: str,
    events: Sequence[str],
    now: datetime,
    secret: str | None = None,
    description: str = "",
) -> Subscription:
    """A new subscription, its URL and events checked (core.webhooks.InvalidSubscription
    says what is wrong), signed with `secret` or a new one."""
    return store.subscribe(
        check_url(url), parse_patterns(events), secret or new_secret(), description, now
    )


def replay(
    store: WebhookStore, subscription_id: int, now: datetime, delivery_id: int | None = None
) -> int:
    """Send again the subscription's dead deliveries, or the one named (dead or delivered);
    returns how many. UnknownSubscription, UnknownDelivery, or NotReplayable for a delivery
    still pending."""
    if store.subscription(subscription_id) is None:
        raise UnknownSubscription(f"no webhook {subscription_id}")
    replayed = store.replay(subscription_id, now, delivery_id)
    if delivery_id is None or replayed:
        return replayed
    found = store.delivery(delivery_id)
    if found is None or found.subscription_id != subscription_id:
        raise UnknownDelivery(f"no delivery {delivery_id} of webhook {subscription_id}")
    raise NotReplayable(f"delivery {delivery_id} is pending: it will be sent without a replay")
