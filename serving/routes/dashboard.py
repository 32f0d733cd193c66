"""The operator's dashboard: one page at /dashboard, its script and style, and the charting
library (plotly.js, from the installed `plotly` package: the machines are offline, no CDN).

The page holds no data and needs no token: the browser asks for a read token once (kept in
sessionStorage) and every data call carries it; the kill switch is signed in the browser with
WebCrypto, the secret never sent. A strict Content-Security-Policy allows only this origin's
scripts, so nothing injected into the page (a decision's reason is LLM text) can run.

This module has no `router`, so serving.app does not mount it under /api/v1: it exposes `page`,
which serving.app mounts at the root.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from importlib.metadata import version
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, Response

ASSETS = Path(__file__).resolve().parent.parent / "dashboard"
# Only these names are served from ASSETS: a request never picks a file by path.
PAGE_ASSETS = {
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
}
PLOTLY_PLACEHOLDER = "{{plotly_js}}"

# Scripts and styles from this origin only, no inline code, no plugins, no framing; fetch and
# the WebSocket to this origin only ('self' covers ws:/wss: to the same host in CSP 3).
# Two inline styles are admitted by their hashes, no other: plotly.js adds one EMPTY <style>
# element and fills it through the CSSOM (which CSP does not govern), and its bundle injects the
# map library's stylesheet (maplibre) at load. Another plotly version may change the second: the
# browser then blocks it (only map traces, unused here, would look wrong) and logs it, and the
# browser test, which allows no console error, says which hash to put here.
PLOTLY_STYLES = (
    "'sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU='",  # "" (filled via the CSSOM)
    "'sha256-gG0b4ixT/IQUp7JJLbyKcpYcYDjq2Wp8NGv3f+aasqo='",  # maplibre-gl.css, plotly 5.24.1
)
CONTENT_SECURITY_POLICY = "; ".join((
    "default-src 'none'",
    "script-src 'self'",
    f"style-src 'self' {' '.join(PLOTLY_STYLES)}",
    "img-src 'self' data:",
    "font-src 'self'",
    "connect-src 'self'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
))  # fmt: skip
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",  # revalidated on each load: a deploy's page shows at once
}
# plotly.js is served under a name with its version, so a year's cache is never stale.
IMMUTABLE = "public, max-age=31536000, immutable"

page = APIRouter(tags=["dashboard"], include_in_schema=False)


class PlotlyMissing(RuntimeError):
    """The installed plotly package has no plotly.min.js (a broken or slimmed install)."""


@lru_cache(maxsize=1)
def plotly_js() -> tuple[str, Path]:
    """(versioned file name, path) of the plotly.min.js the `plotly` package ships, found
    without importing plotly (the API's start-up stays light)."""
    spec = importlib.util.find_spec("plotly")
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        path = Path(folder) / "package_data" / "plotly.min.js"
        if path.is_file():
            return f"plotly-{version('plotly')}.min.js", path
    raise PlotlyMissing(f"plotly.min.js not found in the plotly package at {folders}")


@lru_cache(maxsize=1)
def page_html() -> str:
    name, _ = plotly_js()
    return (ASSETS / "index.html").read_text(encoding="utf-8").replace(PLOTLY_PLACEHOLDER, name)


@page.get("/dashboard")
def dashboard() -> Response:
    return Response(page_html(), media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)


@page.get("/dashboard/static/{name}")
def asset(name: str, request: Request) -> Response:
    """The page's own script and style (revalidated with their ETag on each load: 304 when
    unchanged) and the versioned plotly.js (cached for a year)."""
    plotly_name, plotly_path = plotly_js()
    if name == plotly_name:
        return _file(request, plotly_path, "text/javascript; charset=utf-8", IMMUTABLE)
    if name not in PAGE_ASSETS:
        raise HTTPException(status_code=404, detail=f"no dashboard asset {name!r}")
    return _file(request, ASSETS / name, PAGE_ASSETS[name], "no-cache")


def _file(request: Request, path: Path, media_type: str, cache: str) -> Response:
    headers = {"Cache-Control": cache, "X-Content-Type-Options": "nosniff"}
    response = FileResponse(path, media_type=media_type, headers=headers, stat_result=path.stat())
    etag = response.headers["etag"]
    if request.headers.get("if-none-match") == etag:  # FileResponse itself never answers 304
        return Response(status_code=304, headers={**headers, "ETag": etag})
    return response
