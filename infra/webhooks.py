"""The webhook sender over httpx (core.ports.WebhookSender).

One client (one connection pool) per sender, shared by the dispatcher's threads (httpx.Client is
thread-safe). Redirects are not followed: a 3xx is an answer that is not 2xx, so the delivery is
retried and then dead-lettered with "HTTP 301", rather than the signed body being sent to a
host nobody subscribed. Errors without an HTTP answer become core.webhooks' SendFailed.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import httpx

from core.webhooks import SendFailed, SendTimeout

USER_AGENT = "tradeflow-webhooks/1"
MAX_KEEPALIVE = 16
MAX_BODY = 64 * 1024


class HttpxSender:
    def __init__(self, client: httpx.Client | None = None) -> None:
        self._client = client or httpx.Client(
            follow_redirects=False,
            headers={"User-Agent": USER_AGENT},
            limits=httpx.Limits(max_keepalive_connections=MAX_KEEPALIVE),
            trust_env=False,  # no proxy from the environment: deliveries go where subscribed
        )

    def send(self, url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> int:
        """The receiver's status code. Its body is read and dropped, up to MAX_BODY bytes, so
        the connection can be used again; a larger one is not read (the connection closes)."""
        try:
            with self._client.stream(
                "POST", url, content=body, headers=dict(headers), timeout=httpx.Timeout(timeout)
            ) as response:
                _drain(response, time.monotonic() + timeout)
                return response.status_code
        except httpx.TimeoutException as exc:
            raise SendTimeout(f"no answer within {timeout:g} s ({type(exc).__name__})") from exc
        except httpx.HTTPError as exc:  # refused, reset, TLS, a scheme httpx cannot send to
            raise SendFailed(f"{type(exc).__name__}: {exc}"[:500]) from exc
        except (httpx.InvalidURL, ValueError) as exc:  # a URL or header httpx refuses to encode
            raise SendFailed(f"cannot send: {exc}"[:500]) from exc

    def close(self) -> None:
        self._client.close()


def _drain(response: httpx.Response, deadline: float) -> None:
    """Read the answer's body away (at most MAX_BODY, until `deadline`, a time.monotonic()
    instant): its status is what counts, so a body that breaks off or dawdles is given up on,
    never turned into a failed delivery. httpx's timeout bounds each read, not their sum: a
    receiver sending a byte now and then would otherwise hold a dispatcher thread for days."""
    read = 0
    try:
        for chunk in response.iter_raw():
            read += len(chunk)
            if read > MAX_BODY or time.monotonic() > deadline:
                return
    except httpx.HTTPError:
        return
