"""Signed safety requests (the kill switch and the breaker's early reset), from raw bytes to an
answer. Nothing forged, replayed or malformed is ever applied; everything is answered with a
reason and recorded or counted; a validly signed request is always processed, whatever else the
same client (or everyone behind the same proxy) is sending.

Verification is pure and cheap (sizes, formats, the time window, one HMAC) and comes first:
the per-client limit on refusals only sheds the work of answering requests that fail it.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from core.alerts import Severity
from core.clock import FixedClock
from core.errors import SignatureReplayed, TradeflowError
from core.ports import Broker, Ledger, Notifier
from core.safety.signing import verify
from services.kill_switch import engage

MAX_BODY_BYTES = 4096
MAX_REASON_CHARS = 500
TIMESTAMP_HEADER = "X-Kill-Switch-Timestamp"
SIGNATURE_HEADER = "X-Kill-Switch-Signature"
_TIMESTAMP = re.compile(r"[0-9]{1,12}")  # ASCII digits only: "²" is a digit to str.isdigit
_SIGNATURE = re.compile(r"[0-9a-f]{64}")  # the one canonical form: replay protection keys on it
ACTIONS = {"kill_switch": ("activate", "deactivate"), "breaker": ("reset",)}


@dataclass(frozen=True, slots=True)
class SignedRequest:
    """A safety request as the HTTP layer received it; `body` is None when it was too large
    to read (only its announced or counted size is known)."""

    body: bytes | None
    timestamp: str | None
    signature: str | None
    client: str | None


@dataclass(frozen=True, slots=True)
class Verified:
    action: str
    reason: str
    signature: str
    timestamp: int


@dataclass(frozen=True, slots=True)
class Refusal:
    status: int  # 401: not authenticated; 422: not understood
    why: str
    action: str | None = None
    reason: str | None = None
    timestamp: int | None = None


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: dict[str, Any]


def client_of(peer: str | None, forwarded_for: str | None, trusted: Collection[str]) -> str | None:
    """The caller's address: the socket's peer, unless that peer is a trusted proxy, then the
    right-most X-Forwarded-For hop that is not one (earlier hops are whatever the caller
    wrote). Nothing forwarded is believed from anyone else."""
    if peer is None or peer not in trusted or not forwarded_for:
        return peer
    for hop in reversed([h.strip() for h in forwarded_for.split(",") if h.strip()]):
        if hop not in trusted:
            return hop
    return peer


def verify_request(
    req: SignedRequest, kind: str, secret: str, window_s: int, now: datetime
) -> Verified | Refusal:
    """Body, headers, time window and HMAC, in that order, on nothing but the request."""
    parsed = _parse_body(req.body, ACTIONS[kind])
    if isinstance(parsed, Refusal):
        return parsed
    action, reason = parsed
    timestamp = _timestamp(req.timestamp)
    problem = _header_problem(req, timestamp)
    if problem is not None or timestamp is None or req.signature is None:
        return Refusal(401, problem or "bad headers", action, reason, timestamp)
    refusal = verify(secret, action, timestamp, req.signature, now, window_s)
    if refusal is not None:
        return Refusal(401, refusal, action, reason, timestamp)
    return Verified(action, reason, req.signature, timestamp)


def _timestamp(raw: str | None) -> int | None:
    return int(raw) if raw is not None and _TIMESTAMP.fullmatch(raw) else None


def _header_problem(req: SignedRequest, timestamp: int | None) -> str | None:
    missing = [
        name
        for name, value in ((TIMESTAMP_HEADER, req.timestamp), (SIGNATURE_HEADER, req.signature))
        if not value
    ]
    if missing:
        return f"missing header(s): {', '.join(missing)}"
    if timestamp is None:
        return f"{TIMESTAMP_HEADER} must be unix seconds (1 to 12 ASCII digits)"
    if not _SIGNATURE.fullmatch(req.signature or ""):
        return f"{SIGNATURE_HEADER} must be 64 lowercase hex characters (HMAC-SHA256)"
    return None


def _parse_body(body: bytes | None, actions: tuple[str, ...]) -> tuple[str, str] | Refusal:
    if body is None:
        return Refusal(422, f"body larger than {MAX_BODY_BYTES} bytes")
    try:
        payload = json.loads(body or b"null")
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError
        return Refusal(422, f"body is not JSON: {type(exc).__name__}")
    if not isinstance(payload, dict) or set(payload) != {"action", "reason"}:
        keys = sorted(map(str, payload)) if isinstance(payload, dict) else type(payload).__name__
        return Refusal(422, f"malformed body: expected exactly action and reason, got {keys}")
    action, reason = payload["action"], payload["reason"]
    shown_action = action if isinstance(action, str) and action in actions else None
    shown_reason = printable(reason) if isinstance(reason, str) else None
    if shown_action is None:
        return Refusal(422, f"malformed body: action must be one of {list(actions)}")
    if not isinstance(reason, str) or not 1 <= len(reason) <= MAX_REASON_CHARS:
        return Refusal(422, f"malformed body: reason must be 1 to {MAX_REASON_CHARS} characters",
                       shown_action, shown_reason)  # fmt: skip
    if shown_reason != reason:
        return Refusal(422, "malformed body: reason must be printable text (no control characters)",
                       shown_action, shown_reason)  # fmt: skip
    return action, reason


def printable(text: str) -> str:
    """What may be stored of caller-written text: printable characters only, bounded (a NUL
    is refused by PostgreSQL's text type; control characters confuse whoever reads the log)."""
    return "".join(c if c.isprintable() else "?" for c in text[:MAX_REASON_CHARS])


@dataclass(frozen=True, slots=True)
class DeskConfig:
    secret: str = field(repr=False)
    window_s: int
    rate_limit: int  # refusals per client per minute before answers turn to 429
    retention: timedelta  # refused requests are kept this long; accepted ones forever
    account: str
    close_positions: bool


def _nothing() -> None:
    """The default `written` callback: nobody waits for the write."""


class SafetyDesk:
    """Answers signed safety requests over one ledger. One per API process; the broker is
    built only for an accepted activation (building the paper exchange reads its book)."""

    def __init__(
        self, ledger: Ledger, config: DeskConfig, alerts: Notifier, broker: Callable[[], Broker]
    ) -> None:
        self.ledger, self.config, self.alerts, self.broker = ledger, config, alerts, broker
        self._pruned_at: datetime | None = None
        self._prune_lock = threading.Lock()

    def kill_switch(self, req: SignedRequest, now: datetime) -> Answer:
        """Check and apply a signed kill-switch request."""
        checked = self.check(req, "kill_switch", now)
        if isinstance(checked, Refusal):
            return self.refuse(req, checked, now)
        return self.apply_kill_switch(req, checked, now)

    def check(self, req: SignedRequest, kind: str, now: datetime) -> Verified | Refusal:
        """The signature, window, headers and body of a request of `kind` ("kill_switch",
        "breaker"): no I/O (the API runs it on its event loop; only a verified request makes
        other requests wait for its write)."""
        return verify_request(req, kind, self.config.secret, self.config.window_s, now)

    def apply_kill_switch(
        self,
        req: SignedRequest,
        verified: Verified,
        now: datetime,
        written: Callable[[], None] = _nothing,
    ) -> Answer:
        """Apply a verified kill-switch request; `written` is called as soon as the ledger holds
        it (HALTED is durable), before the orders are cancelled and the positions closed."""
        try:
            state = self.ledger.requests.set_kill_switch(
                verified.action == "activate", verified.reason, verified.signature, now,
                req.client, verified.timestamp,
            )  # fmt: skip  # HALTED is durable from here on: no new order is sent
        except SignatureReplayed as exc:
            return self._replayed(req, verified, exc, now)
        written()
        out: dict[str, Any] = {
            "active": state.active,
            "reason": state.reason,
            "changed_at": None if state.changed_at is None else state.changed_at.isoformat(),
        }
        if state.active:
            out |= self._engage(now)
        else:
            self.alerts.send(
                "tradeflow kill switch released",
                f"reason: {verified.reason}",
                severity=Severity.CRITICAL,
            )
        return Answer(200, out)

    def _engage(self, now: datetime) -> dict[str, Any]:
        """Cancel and close, before answering: the caller learns what was done. HALTED is
        already durable; if cancelling or closing cannot even start (the broker cannot be
        built, the ledger stopped answering), the answer and an alert say so."""
        cfg = self.config
        clock = FixedClock(now)
        try:
            report = engage(
                self.ledger, self.broker(), cfg.account, clock, self.alerts, cfg.close_positions
            )
        except TradeflowError as exc:
            why = f"{type(exc).__name__}: {exc}"
            self.alerts.send(
                "tradeflow kill switch ACTIVE, cancel/close FAILED", why, severity=Severity.CRITICAL
            )
            return {"cancelled_orders": 0, "closing_orders": 0, "failures": [why], "seconds": None}
        return {
            "cancelled_orders": len(report.cancelled),
            "closing_orders": len(report.closing_orders),
            "failures": report.failures,
            "seconds": round(report.seconds_total, 4),
        }

    def breaker_reset(self, req: SignedRequest, now: datetime) -> Answer:
        """Check and apply a signed early reset of the breaker."""
        checked = self.check(req, "breaker", now)
        if isinstance(checked, Refusal):
            return self.refuse(req, checked, now)
        return self.apply_breaker_reset(req, checked, now)

    def apply_breaker_reset(
        self,
        req: SignedRequest,
        verified: Verified,
        now: datetime,
        written: Callable[[], None] = _nothing,
    ) -> Answer:
        """Apply a verified early reset; `written` as for the kill switch, before the alert."""
        try:
            self.ledger.requests.reset_circuit_breaker(
                verified.reason, verified.signature, now, req.client, verified.timestamp
            )
        except SignatureReplayed as exc:
            return self._replayed(req, verified, exc, now)
        written()
        self.alerts.send(
            "tradeflow circuit breaker reset early",
            f"reason: {verified.reason}",
            severity=Severity.CRITICAL,
        )
        return Answer(
            200, {"tripped": False, "reason": verified.reason, "reset_at": now.isoformat()}
        )

    def _replayed(
        self, req: SignedRequest, verified: Verified, exc: SignatureReplayed, now: datetime
    ) -> Answer:
        """A valid signature used before: refused like any other bad request (401)."""
        refusal = Refusal(401, str(exc), verified.action, verified.reason, verified.timestamp)
        return self.refuse(req, refusal, now)

    def refuse(self, req: SignedRequest, refusal: Refusal, now: datetime) -> Answer:
        """Record (or, past the client's budget, only count) the refusal; past the limit the
        answer is 429, which tells a flooding client nothing about why."""
        limit = self.config.rate_limit
        before = self.ledger.requests.record_refusal(
            refusal.action, refusal.reason, refusal.why, now, req.client, refusal.timestamp,
            detail_budget=limit,
        )  # fmt: skip
        self._prune(now)
        if before >= limit:
            why = f"too many refused requests from {req.client}: {before + 1} in the last 60s"
            return Answer(429, {"detail": why})
        return Answer(refusal.status, {"detail": refusal.why})

    def _prune(self, now: datetime) -> None:
        """Refusals older than the retention period go, at most once an hour per process."""
        if self._pruned_at is not None and now - self._pruned_at < timedelta(hours=1):
            return
        if not self._prune_lock.acquire(blocking=False):
            return
        try:
            self._pruned_at = now
            self.ledger.requests.prune_refusals(now - self.config.retention)
        finally:
            self._prune_lock.release()
