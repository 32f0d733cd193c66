"""Webhook subscriptions and their dead-letter queue (scope admin).

POST /webhooks subscribes a URL (http or https) to event kinds, channels or "*"; its signing
secret is generated unless given, and shown in this answer only: never again (GET shows none).
Each delivery is signed (`Tradeflow-Signature: t=…,v1=…`, core/webhooks.py says how to verify
it), retried with backoff, and dead-lettered after TRADEFLOW_WEBHOOK_MAX_ATTEMPTS;
GET /webhooks/{id}/deliveries?status=dead lists them with their last error and
POST /webhooks/{id}/replay sends them again (all, or `{"delivery_id": n}`, which may also be
one delivered before). DELETE removes a subscription with its deliveries.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from core.webhooks import (
    KNOWN_PATTERNS,
    MAX_PATTERNS,
    MAX_URL_LENGTH,
    Delivery,
    DeliveryStatus,
    InvalidSubscription,
    NotReplayable,
    Subscription,
    UnknownDelivery,
    UnknownSubscription,
)
from services import webhooks
from serving.auth import AdminToken
from serving.deps import api_of
from serving.json import json_response
from serving.listing import AUTH_RESPONSES, ErrorOut, iso, unprocessable

router = APIRouter(prefix="/webhooks", tags=["webhooks"])

MAX_ID = 2**31 - 1  # the ledger's INTEGER ids: a larger one is simply not there
WebhookId = Annotated[int, Path(ge=1, le=MAX_ID, description="The webhook's id.")]
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorOut, "description": "No such webhook (or delivery)."}
}


class WebhookIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=MAX_URL_LENGTH, examples=["https://example.com/tradeflow"])
    events: list[Annotated[str, Field(max_length=64)]] = Field(
        min_length=1,
        max_length=MAX_PATTERNS,
        description=f"Event kinds, channels, or '*': {', '.join(KNOWN_PATTERNS)}.",
        examples=[["orders", "safety.kill_switch"]],
    )
    secret: str | None = Field(
        None,
        pattern=r"^[\x21-\x7e]{16,128}$",
        description="16 to 128 printable ASCII characters, no spaces; generated if not given.",
    )
    # no control characters: PostgreSQL refuses a NUL in text
    description: str = Field("", max_length=255, pattern=r"^[^\x00-\x1f\x7f]*$")


class WebhookOut(BaseModel):
    id: int
    url: str
    events: list[str]
    description: str
    active: bool
    created_at: datetime


class WebhookCreated(WebhookOut):
    secret: str = Field(description="Shown once: keep it to verify the signatures.")


class WebhooksOut(BaseModel):
    webhooks: list[WebhookOut]


class DeliveryOut(BaseModel):
    id: int
    event_id: int
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    last_status_code: int | None
    created_at: datetime
    delivered_at: datetime | None


class DeliveriesOut(BaseModel):
    deliveries: list[DeliveryOut]


class ReplayIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    delivery_id: int | None = Field(None, ge=1, le=MAX_ID, description="Only this delivery.")


class ReplayOut(BaseModel):
    replayed: int


def webhook_json(sub: Subscription) -> dict[str, Any]:
    return {
        "id": sub.subscription_id,
        "url": sub.url,
        "events": list(sub.events),
        "description": sub.description,
        "active": sub.active,
        "created_at": sub.created_at.isoformat(),
    }


def delivery_json(d: Delivery) -> dict[str, Any]:
    return {
        "id": d.delivery_id,
        "event_id": d.event_id,
        "status": d.status.value,
        "attempts": d.attempts,
        "next_attempt_at": d.next_attempt_at.isoformat(),
        "last_error": d.last_error,
        "last_status_code": d.last_status_code,
        "created_at": d.created_at.isoformat(),
        "delivered_at": iso(d.delivered_at),
    }


def _missing(subscription_id: int) -> Response:
    return json_response({"detail": f"no webhook {subscription_id}"}, 404)


@router.post(
    "",
    status_code=201,
    responses={201: {"model": WebhookCreated}, **AUTH_RESPONSES},
)
async def create_webhook(request: Request, body: WebhookIn, _: AdminToken) -> Response:
    """Subscribe a URL to events; the answer holds the signing secret, once."""
    api = api_of(request)
    try:
        sub = await run_in_threadpool(
            webhooks.subscribe,
            api.ledger.webhooks,
            body.url,
            body.events,
            api.clock.now(),
            body.secret,
            body.description,
        )
    except InvalidSubscription as exc:
        raise unprocessable(exc.field, "body", str(exc)) from None
    return json_response(webhook_json(sub) | {"secret": sub.secret}, 201)


@router.get("", responses={200: {"model": WebhooksOut}, **AUTH_RESPONSES})
async def list_webhooks(request: Request, _: AdminToken) -> Response:
    """Every subscription, oldest first; secrets are never shown."""
    api = api_of(request)
    subs = await api.read(api.ledger.webhooks.subscriptions)
    return json_response({"webhooks": [webhook_json(s) for s in subs]})


@router.get("/{webhook_id}", responses={200: {"model": WebhookOut}, **NOT_FOUND, **AUTH_RESPONSES})
async def get_webhook(request: Request, webhook_id: WebhookId, _: AdminToken) -> Response:
    api = api_of(request)
    sub = await api.read(api.ledger.webhooks.subscription, webhook_id)
    return _missing(webhook_id) if sub is None else json_response(webhook_json(sub))


@router.delete("/{webhook_id}", status_code=204, responses={**NOT_FOUND, **AUTH_RESPONSES})
async def delete_webhook(request: Request, webhook_id: WebhookId, _: AdminToken) -> Response:
    """Remove a subscription and its deliveries (pending ones are not sent)."""
    api = api_of(request)
    if not await run_in_threadpool(api.ledger.webhooks.unsubscribe, webhook_id):
        return _missing(webhook_id)
    return Response(status_code=204)


@router.get(
    "/{webhook_id}/deliveries",
    responses={200: {"model": DeliveriesOut}, **NOT_FOUND, **AUTH_RESPONSES},
)
async def list_deliveries(
    request: Request,
    webhook_id: WebhookId,
    _: AdminToken,
    status: Annotated[
        DeliveryStatus | None, Query(description="Only these: `dead` is the dead-letter queue.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500, description="Newest first.")] = 100,
) -> Response:
    api = api_of(request)
    if await api.read(api.ledger.webhooks.subscription, webhook_id) is None:
        return _missing(webhook_id)
    found = await api.read(api.ledger.webhooks.deliveries, webhook_id, status, limit)
    return json_response({"deliveries": [delivery_json(d) for d in found]})


@router.post(
    "/{webhook_id}/replay",
    responses={
        200: {"model": ReplayOut},
        **NOT_FOUND,
        409: {"model": ErrorOut, "description": "That delivery is still pending."},
        **AUTH_RESPONSES,
    },
)
async def replay_webhook(
    request: Request, webhook_id: WebhookId, _: AdminToken, body: ReplayIn | None = None
) -> Response:
    """Send the webhook's dead-lettered deliveries again (or the one named): they are due at
    once, with their attempts counted from zero."""
    api = api_of(request)
    delivery_id = None if body is None else body.delivery_id
    try:
        replayed = await run_in_threadpool(
            webhooks.replay, api.ledger.webhooks, webhook_id, api.clock.now(), delivery_id
        )
    except (UnknownSubscription, UnknownDelivery) as exc:
        return json_response({"detail": str(exc)}, 404)
    except NotReplayable as exc:
        return json_response({"detail": str(exc)}, 409)
    return json_response({"replayed": replayed})
