"""Models over REST: the registered models, and one prediction through the same model cache
the decision flow uses (services/ml.py does the work).

Reads, so unauthenticated like /health and /safety/status; only the safety controls are signed.
The body is read with a bound before pydantic parses it (as the signed routes do). Registry
calls, model loads and predictions run on the thread pool, never on the event loop: a first
load takes seconds.

Errors: 404 an unknown model, version, alias or candle; 422 a malformed body, or a feature row
with features missing, non-finite or unknown (each list names them); 503 no model to serve yet
or a registry that did not answer, with a reason code (as health's 503).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, model_validator
from starlette.concurrency import run_in_threadpool

from services import ml
from serving.auth import ReadToken
from serving.deps import bounded_body
from serving.json import json_response
from serving.metrics import observed

router = APIRouter(prefix="/ml", tags=["ml"])

MAX_PREDICT_BODY_BYTES = 16_384  # a full feature row is about 4 KB


class PredictIn(BaseModel):
    """Either `symbol` and `candle_time` (a stored candle's open time, with its offset), or
    `features` (name -> value, every feature of the model's feature set); optionally `model`
    (default: the configured one) and `version` (a number or an alias; default: champion)."""

    model_config = ConfigDict(extra="forbid")

    symbol: str | None = Field(None, min_length=1, max_length=40)
    candle_time: AwareDatetime | None = None
    features: dict[str, float | None] | None = Field(None, max_length=1_000)
    model: str | None = Field(None, min_length=1, max_length=256)
    version: str | None = Field(None, min_length=1, max_length=256)

    @model_validator(mode="after")
    def _one_kind(self) -> PredictIn:
        by_candle = self.symbol is not None or self.candle_time is not None
        if by_candle == (self.features is not None):
            raise ValueError("give either symbol and candle_time, or features")
        if by_candle and (self.symbol is None or self.candle_time is None):
            raise ValueError("symbol and candle_time go together")
        return self

    def query(self) -> ml.PredictRequest:
        ref = ml.ModelRef(self.model, self.version)
        if self.symbol is not None and self.candle_time is not None:
            return ml.CandleQuery(self.symbol, self.candle_time, ref)
        return ml.FeatureQuery(self.features or {}, ref)  # _one_kind: features were given


def service_of(request: Request) -> ml.MlService:
    service: ml.MlService = request.app.state.ml
    return service


@router.get("/models")
async def models(request: Request, token: ReadToken) -> Response:
    service = service_of(request)
    try:
        found = await run_in_threadpool(service.models)
    except ml.RegistryDown:
        return _unavailable("registry_unavailable", None)
    return json_response({"models": [_model_json(m) for m in found]})


@router.post(
    "/predict",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": PredictIn.model_json_schema()}},
        }
    },
)
async def predict(request: Request, token: ReadToken) -> Response:
    # The model's call observed for /metrics (tradeflow_model_predict_seconds, source="api").
    histogram = getattr(request.app.state, "predict_seconds", None)
    service = observed(service_of(request), histogram)
    body = await bounded_body(request, MAX_PREDICT_BODY_BYTES)
    if body is None:
        return json_response({"detail": f"body larger than {MAX_PREDICT_BODY_BYTES} bytes"}, 413)
    try:
        query = PredictIn.model_validate_json(body or b"null").query()
    except ValidationError as exc:
        return json_response({"detail": "malformed body", "errors": _errors(exc)}, 422)
    try:
        p = await run_in_threadpool(service.predict, query)
    except (ml.ModelNotFound, ml.CandleNotFound) as exc:
        return json_response({"detail": str(exc)}, 404)
    except ml.InvalidFeatures as exc:
        return json_response({
            "detail": str(exc),
            "missing": exc.missing,
            "not_finite": exc.not_finite,
            "unknown": exc.unknown,
        }, 422)  # fmt: skip
    except ml.NoServableModel as exc:
        return _unavailable("no_servable_model", str(exc))
    except ml.RegistryDown:
        return _unavailable("registry_unavailable", None)
    return json_response(_prediction_json(p))


def _unavailable(reason: str, detail: str | None) -> Response:
    """As health's 503: a reason code; a detail only where it is our own message (a registry
    error's text can name hosts)."""
    payload: dict[str, Any] = {"status": "unavailable", "reason": reason}
    if detail is not None:
        payload["detail"] = detail
    return json_response(payload, 503)


def _errors(exc: ValidationError) -> list[dict[str, str]]:
    return [
        {"field": ".".join(str(p) for p in e["loc"]) or "body", "message": e["msg"]}
        for e in exc.errors(include_url=False, include_input=False)
    ]


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat()


def _prediction_json(p: ml.Prediction) -> dict[str, Any]:
    return {
        "probability": p.probability,
        "model": {
            "name": p.model_name,
            "version": p.model_version,
            "feature_set_version": p.feature_set_version,
        },
        "symbol": p.symbol,
        "candle_time": _iso(p.candle_time),
    }


def _model_json(m: ml.ModelInfo) -> dict[str, Any]:
    return {
        "name": m.name,
        "aliases": m.aliases,
        "versions": [
            {
                "version": v.version,
                "aliases": list(v.aliases),
                "status": v.status,
                "promotion": v.promotion,
                "promotion_reason": v.promotion_reason,
                "feature_set_version": v.feature_set_version,
                "created_at": _iso(v.created_at),
                "run_id": v.run_id,
                "metrics": dict(v.metrics),
                "tags": dict(v.tags),
            }
            for v in m.versions
        ],
    }
