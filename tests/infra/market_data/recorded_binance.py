"""A ccxt.binance whose HTTP layer answers from real candles, in Binance's kline JSON.

Only `fetch()` (the transport) is replaced: ccxt builds the request, and parses the response
with its own code, exactly as it would against the exchange.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import ccxt
import pandas as pd

HOUR_MS = 3_600_000


def kline(row: pd.Series) -> list[object]:
    open_ms = int(row["open_time"].value // 1_000_000)
    return [
        open_ms,
        f"{row['open']:.8f}",
        f"{row['high']:.8f}",
        f"{row['low']:.8f}",
        f"{row['close']:.8f}",
        f"{row['volume']:.8f}",
        open_ms + HOUR_MS - 1,
        "0",
        0,
        "0",
        "0",
        "0",
    ]


class RecordedBinance(ccxt.binance):
    def __init__(
        self, candles: dict[str, pd.DataFrame], fault: Callable[[int, str], None] | None = None
    ) -> None:
        super().__init__({"enableRateLimit": False})
        self._candles = candles
        self._fault = fault
        self.requests: list[dict[str, str]] = []
        self.set_markets(
            [
                self.safe_market_structure(
                    {
                        "id": s.replace("/", ""),
                        "symbol": s,
                        "base": s.split("/")[0],
                        "quote": s.split("/")[1],
                        "baseId": s.split("/")[0],
                        "quoteId": s.split("/")[1],
                        "type": "spot",
                        "spot": True,
                        "active": True,
                        "precision": {"amount": 0.00001, "price": 0.01},
                        "limits": {},
                        "info": {"orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET"]},
                    }
                )
                for s in candles
            ]
        )

    def fetch(self, url, method="GET", headers=None, body=None):  # type: ignore[no-untyped-def]
        query = {k: v[0] for k, v in parse_qs(urlparse(url).query).items()}
        self.requests.append(query)
        if self._fault is not None:
            self._fault(len(self.requests), url)  # may raise through ccxt's own error mapping
        symbol = next(s for s in self._candles if s.replace("/", "") == query["symbol"])
        frame = self._candles[symbol]
        start = pd.Timestamp(int(query.get("startTime", 0)), unit="ms", tz="UTC")
        limit = int(query.get("limit", 500))
        page = frame[frame["open_time"] >= start].head(limit)
        return [kline(r) for _, r in page.iterrows()]


SPOT_FIXTURE = Path(__file__).parents[2] / "fixtures" / "ccxt_binance_spot.json"

# Which recorded method answers which Binance REST call.
ENDPOINTS = {
    ("GET", "/api/v3/depth"): "fetchOrderBook",
    ("GET", "/api/v3/aggTrades"): "fetchTrades",
    ("POST", "/api/v3/order"): "createOrder",
    ("GET", "/api/v3/order"): "fetchOrder",
    ("DELETE", "/api/v3/order"): "cancelOrder",
    ("GET", "/api/v3/openOrders"): "fetchOpenOrders",
    ("GET", "/api/v3/allOrders"): "fetchOrders",
    ("GET", "/api/v3/myTrades"): "fetchMyTrades",
    ("GET", "/api/v3/account"): "fetchBalance",
}


def recorded_spot_cases() -> dict[str, dict[str, Any]]:
    return json.loads(SPOT_FIXTURE.read_text())["methods"]  # type: ignore[no-any-return]


class RecordedSpotBinance(RecordedBinance):
    """Answers each REST path with ccxt's recorded Binance response for it. `answers` may
    override a method's response, and `fault(n, url)` may raise before answering."""

    def __init__(
        self,
        symbols: Sequence[str] = ("BTC/USDT", "ETH/USDT", "LTC/USDT", "SOL/USDT"),
        answers: dict[str, Any] | None = None,
        fault: Callable[[int, str], None] | None = None,
    ) -> None:
        super().__init__({s: pd.DataFrame() for s in symbols}, fault)
        self.apiKey, self.secret = "recorded-key", "recorded-secret"
        self.cases = recorded_spot_cases()
        self.answers = answers or {}
        self.calls: list[tuple[str, str]] = []
        self.bodies: list[str | None] = []

    def fetch(self, url, method="GET", headers=None, body=None):  # type: ignore[no-untyped-def]
        path = urlparse(url).path
        self.calls.append((method, url))
        self.bodies.append(body)
        if self._fault is not None:
            self._fault(len(self.calls), url)
        name = next(
            (n for (m, p), n in ENDPOINTS.items() if m == method and path.endswith(p)), None
        )
        if name is None:
            raise AssertionError(f"no recorded response for {method} {url}")
        answer = self.answers[name] if name in self.answers else self.cases[name]["httpResponse"]
        if isinstance(answer, HttpError):
            body = json.dumps(answer.body)
            self.handle_errors(answer.status, "", url, method, {}, body, answer.body, {}, None)
            self.handle_http_status_code(answer.status, "", url, method, body)
            raise AssertionError(f"ccxt did not turn HTTP {answer.status} {body} into an error")
        return copy.deepcopy(answer)


@dataclass(frozen=True)
class HttpError:
    """An exchange error answer, turned into an exception by ccxt's own error mapping."""

    status: int
    body: dict[str, Any]
