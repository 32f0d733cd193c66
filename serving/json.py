"""A JSON answer built with the standard library: the read endpoints return plain dicts of
strings and numbers, so FastAPI's generic encoder would only add work."""

from __future__ import annotations

import json
from typing import Any

from fastapi.responses import Response


def json_response(payload: dict[str, Any], status_code: int = 200) -> Response:
    body = json.dumps(payload, separators=(",", ":"), default=str).encode()
    return Response(body, status_code=status_code, media_type="application/json")
