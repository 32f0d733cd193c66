"""A container's health check: exit 0 when GET URL answers 2xx within the timeout, else 1.

Standard library only: the slim image has no curl. The Dockerfile's HEALTHCHECK (the API) and
docker-compose.yml (every service built from the image) run it as
`python /app/deploy/healthcheck.py URL`; Docker keeps what it prints with the container's health.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request

TIMEOUT_S = 5.0
# No proxy: a health check asks the container itself, never through HTTP(S)_PROXY.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def check(url: str, timeout: float = TIMEOUT_S) -> str | None:
    """None when `url` answers 2xx, else why not (the status, or the connection's error)."""
    try:
        with _OPENER.open(url, timeout=timeout) as response:
            status = response.status
    except urllib.error.HTTPError as exc:  # 4xx/5xx: the server answered "not healthy"
        return f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError, ValueError) as exc:  # refused, timed out, bad URL
        return f"{type(exc).__name__}: {exc}"
    return None if 200 <= status < 300 else f"HTTP {status}"


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: healthcheck.py URL", file=sys.stderr)
        return 2
    problem = check(argv[1])
    if problem is not None:
        print(f"unhealthy: {argv[1]}: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
