"""Bearer tokens through the real app over the real ledger (SQLite and PostgreSQL): a tiny router
with one route per scope stands in for the resources. 401 with `WWW-Authenticate: Bearer` for a
missing, garbled, forged, revoked or expired token (and nothing of the secret logged), 403 for a
missing scope; the WebSocket's token from the header or the query; CORS only when configured."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi import APIRouter, WebSocket
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.websockets import WebSocketDisconnect

from core.auth import Scope, parse_token
from core.clock import FakeClock
from infra.ledger.ledger import open_ledger
from serving.auth import AdminToken, ReadToken, TradeToken, websocket_token
from tests.serving.conftest import NOW, make_client
from tests.serving.tokens import bearer, issue_token

probe = APIRouter(prefix="/api/v1/probe")


@probe.get("/read")
async def read(token: ReadToken) -> dict[str, str]:
    return {"token_id": token.token_id}


@probe.post("/trade")
async def trade(token: TradeToken) -> dict[str, str]:
    return {"token_id": token.token_id}


@probe.delete("/admin")
async def admin(token: AdminToken) -> dict[str, str]:
    return {"token_id": token.token_id}


@probe.websocket("/ws")
async def socket(ws: WebSocket) -> None:
    token = await websocket_token(ws)
    if token is None:
        await ws.close(code=4401)
        return
    await ws.accept()
    await ws.send_json({"token_id": token.token_id})
    await ws.close()


CALLS = [("GET", "/api/v1/probe/read"), ("POST", "/api/v1/probe/trade"),
         ("DELETE", "/api/v1/probe/admin")]  # fmt: skip


def probed(url: str, clock: FakeClock | None = None, **settings: object) -> TestClient:
    client = make_client(url, clock, **settings)
    client.app.include_router(probe)  # type: ignore[attr-defined]
    return client


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
def client(ledger_url: str, clock: FakeClock) -> Iterator[TestClient]:
    with probed(ledger_url, clock) as c:
        yield c


def statuses(client: TestClient, token: str) -> list[int]:
    return [client.request(m, path, headers=bearer(token)).status_code for m, path in CALLS]


@pytest.mark.parametrize(
    ("scope", "expected"),
    [
        (Scope.READ, [200, 403, 403]),
        (Scope.TRADE, [200, 200, 403]),
        (Scope.ADMIN, [200, 200, 200]),
    ],
)
def test_routes_when_token_has_scope_then_it_and_lower_scopes_only(
    client: TestClient, ledger_url: str, scope: Scope, expected: list[int]
) -> None:
    assert statuses(client, issue_token(ledger_url, scope)) == expected


def test_route_when_scope_missing_then_403_naming_it(client: TestClient, ledger_url: str) -> None:
    r = client.post("/api/v1/probe/trade", headers=bearer(issue_token(ledger_url, Scope.READ)))
    assert r.status_code == 403
    assert r.json() == {"detail": "token lacks scope 'trade'"}


def test_route_when_token_valid_then_handler_gets_that_token(
    client: TestClient, ledger_url: str
) -> None:
    token = issue_token(ledger_url, Scope.READ)
    r = client.get("/api/v1/probe/read", headers=bearer(token))
    assert r.json() == {"token_id": parse_token(token).token_id}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": ""},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer    "},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Token tf_0123456789ab_" + "A" * 43},
        {"X-Api-Key": "tf_0123456789ab_" + "A" * 43},
    ],
)
def test_route_when_no_bearer_token_then_401_with_challenge(
    client: TestClient, headers: dict[str, str]
) -> None:
    for method, path in CALLS:
        r = client.request(method, path, headers=headers)
        assert r.status_code == 401
        assert r.headers["www-authenticate"] == "Bearer"
        assert "missing bearer token" in r.json()["detail"]


def test_route_when_scheme_in_other_case_then_accepted(client: TestClient, ledger_url: str) -> None:
    token = issue_token(ledger_url, Scope.READ)
    r = client.get("/api/v1/probe/read", headers={"Authorization": f"bearer {token}"})
    assert r.status_code == 200


def forgeries(token: str) -> list[str]:
    """Texts close to a real token: other secret, other id, cut, extended, case flipped."""
    parsed = parse_token(token)
    other = "B" if parsed.secret[0] != "B" else "C"
    return [
        f"tf_{parsed.token_id}_{other}{parsed.secret[1:]}",
        f"tf_{'0' * 12}_{parsed.secret}",
        token[:-1],
        token + "A",
        token.swapcase(),
        parsed.secret,
        "tf_" + parsed.secret,
        "garbage \x7f\u00e9 " * 10,
    ]


def test_route_when_token_forged_or_garbled_then_401_and_secret_never_logged(
    client: TestClient, ledger_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    token = issue_token(ledger_url, Scope.ADMIN)
    secret = parse_token(token).secret
    caplog.set_level(logging.DEBUG)

    for forged in forgeries(token):
        # Bytes: a header is latin-1 on the wire, whatever a client sends.
        r = client.get(
            "/api/v1/probe/read", headers={"Authorization": f"Bearer {forged}".encode("latin-1")}
        )
        assert r.status_code == 401, forged
        assert r.headers["www-authenticate"] == "Bearer"
        assert r.json() == {"detail": "invalid token"}

    refusals = [r.getMessage() for r in caplog.records if r.name == "serving.auth"]
    assert refusals  # a refusal of a well-shaped token is logged, by id
    assert parse_token(token).token_id in refusals[0]
    assert secret[:12] not in caplog.text
    assert "B" + secret[1:] not in caplog.text


def test_route_when_token_revoked_then_401_revoked(client: TestClient, ledger_url: str) -> None:
    token = issue_token(ledger_url, Scope.ADMIN)
    open_ledger(ledger_url).tokens.revoke(parse_token(token).token_id, NOW)

    r = client.get("/api/v1/probe/read", headers=bearer(token))

    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"
    assert r.json() == {"detail": "token revoked"}


def test_route_when_token_expires_then_401_expired_from_that_moment(
    client: TestClient, ledger_url: str, clock: FakeClock
) -> None:
    token = issue_token(ledger_url, Scope.READ, expires_at=NOW + timedelta(minutes=1))
    assert client.get("/api/v1/probe/read", headers=bearer(token)).status_code == 200

    clock.advance(minutes=1)  # the cached token is checked for expiry too
    r = client.get("/api/v1/probe/read", headers=bearer(token))

    assert r.status_code == 401
    assert r.json() == {"detail": "token expired"}


def test_open_routes_when_no_token_then_still_answer(client: TestClient) -> None:
    assert client.get("/api/v1/health").status_code == 200
    assert client.get("/api/v1/safety/status").status_code == 200
    assert client.get("/metrics").status_code == 200


def test_websocket_when_token_in_header_or_query_then_accepted(
    client: TestClient, ledger_url: str
) -> None:
    token = issue_token(ledger_url, Scope.READ)
    token_id = parse_token(token).token_id
    with client.websocket_connect("/api/v1/probe/ws", headers=bearer(token)) as ws:
        assert ws.receive_json() == {"token_id": token_id}
    with client.websocket_connect(f"/api/v1/probe/ws?token={token}") as ws:
        assert ws.receive_json() == {"token_id": token_id}


@pytest.mark.parametrize("query", ["", "?token=", "?token=tf_0123456789ab_" + "A" * 43])
def test_websocket_when_token_missing_or_unknown_then_refused(
    client: TestClient, query: str
) -> None:
    with (
        pytest.raises(WebSocketDisconnect) as refused,
        client.websocket_connect(f"/api/v1/probe/ws{query}") as ws,
    ):
        ws.receive_json()
    assert refused.value.code == 4401


def test_websocket_when_token_revoked_then_refused(client: TestClient, ledger_url: str) -> None:
    token = issue_token(ledger_url, Scope.READ)
    open_ledger(ledger_url).tokens.revoke(parse_token(token).token_id, NOW)
    with (
        pytest.raises(WebSocketDisconnect),
        client.websocket_connect("/api/v1/probe/ws", headers=bearer(token)) as ws,
    ):
        ws.receive_json()


ORIGIN = "https://ops.example"
PREFLIGHT = {"Origin": ORIGIN, "Access-Control-Request-Method": "GET",
             "Access-Control-Request-Headers": "authorization"}  # fmt: skip


def test_cors_when_not_configured_then_no_cors_headers(client: TestClient, ledger_url: str) -> None:
    token = issue_token(ledger_url, Scope.READ)
    r = client.get("/api/v1/probe/read", headers=bearer(token) | {"Origin": ORIGIN})
    preflight = client.options("/api/v1/probe/read", headers=PREFLIGHT)

    assert r.status_code == 200
    assert not [h for h in r.headers if h.startswith("access-control-")]
    assert not [h for h in preflight.headers if h.startswith("access-control-")]


def test_cors_when_origin_configured_then_headers_for_it_only(ledger_url: str) -> None:
    token = issue_token(ledger_url, Scope.READ)
    with probed(ledger_url, cors_origins=(ORIGIN,)) as c:
        allowed = c.get("/api/v1/probe/read", headers=bearer(token) | {"Origin": ORIGIN})
        preflight = c.options("/api/v1/probe/read", headers=PREFLIGHT)
        other = c.get(
            "/api/v1/probe/read", headers=bearer(token) | {"Origin": "https://evil.example"}
        )

    assert allowed.headers["access-control-allow-origin"] == ORIGIN
    assert "retry-after" in allowed.headers["access-control-expose-headers"].lower()
    assert "x-correlation-id" in allowed.headers["access-control-expose-headers"].lower()
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == ORIGIN
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
    assert "access-control-allow-origin" not in other.headers


def test_openapi_when_route_requires_scope_then_bearer_scheme_on_it_only(
    client: TestClient,
) -> None:
    doc = client.get("/openapi.json").json()

    assert doc["components"]["securitySchemes"]["bearer"] | {"description": ""} == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "tf_<id>_<secret>",
        "description": "",
    }
    assert doc["paths"]["/api/v1/probe/trade"]["post"]["security"] == [{"bearer": []}]
    assert "security" not in doc["paths"]["/api/v1/health"]["get"]


WELL_FORMED = "tf_0123456789ab_" + "A" * 43


def test_route_when_ledger_unreachable_then_503_and_websocket_refused() -> None:
    with probed("postgresql+psycopg://postgres@127.0.0.1:1/nowhere") as c:
        r = c.get("/api/v1/probe/read", headers=bearer(WELL_FORMED))
        with (
            pytest.raises(WebSocketDisconnect) as refused,
            c.websocket_connect("/api/v1/probe/ws", headers=bearer(WELL_FORMED)) as ws,
        ):
            ws.receive_json()
    assert r.status_code == 503
    assert r.json() == {"status": "unavailable", "reason": "ledger_unavailable"}
    assert refused.value.code == 4401


@pytest.fixture
def issued(ledger_url: str) -> str:
    """One token for the test (hypothesis's examples share it, and the ledger)."""
    return issue_token(ledger_url, Scope.READ)


# What a client can put in a header: printable latin-1, no line breaks.
HEADER_TEXT = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
    max_size=100,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_route_when_any_header_but_an_issued_token_then_401(
    client: TestClient, issued: str, data: st.DataObject
) -> None:
    token_id = parse_token(issued).token_id
    text = data.draw(
        st.one_of(
            HEADER_TEXT,
            st.from_regex(r"tf_[0-9a-f]{12}_[A-Za-z0-9_-]{43}", fullmatch=True),
            st.from_regex(r"[A-Za-z0-9_-]{43}", fullmatch=True).map(
                lambda secret: f"tf_{token_id}_{secret}"
            ),
        )
    )
    if text.strip() == issued:
        return
    headers = {"Authorization": f"Bearer {text}".encode("latin-1")}
    assert client.get("/api/v1/probe/read", headers=headers).status_code == 401
