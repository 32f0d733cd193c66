"""GET /dashboard and its assets, without a browser: the page comes with a strict
Content-Security-Policy and holds no inline code, every asset it names is served from this
origin (plotly.js from the installed plotly package, cached for a year under its versioned
name), nothing else is served, and the assets ship in the wheel as package data."""

from __future__ import annotations

import base64
import hashlib
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from html.parser import HTMLParser
from importlib.metadata import version
from importlib.resources import files
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from serving.routes.dashboard import CONTENT_SECURITY_POLICY, PLOTLY_STYLES
from tests.serving.conftest import make_client

ROOT = Path(__file__).resolve().parents[2]
ASSETS = ROOT / "serving" / "dashboard"
PLOTLY_JS = Path(str(files("plotly") / "package_data" / "plotly.min.js"))
PLOTLY_URL = f"/dashboard/static/plotly-{version('plotly')}.min.js"


class Page(HTMLParser):
    """What a page asks the browser to run or fetch."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[dict[str, str | None]] = []
        self.inline_code: list[str] = []
        self.urls: list[str] = []
        self.handlers: list[str] = []  # on* attributes and style attributes
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        self.handlers += [k for k in found if k.startswith("on") or k == "style"]
        self.urls += [v for k, v in attrs if k in {"src", "href"} and v is not None]
        if tag == "script":
            self.scripts.append(found)
            self._in_script = True

    def handle_endtag(self, tag: str) -> None:
        self._in_script = self._in_script and tag != "script"

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline_code.append(data)


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with make_client(f"sqlite:///{tmp_path / 'ledger.db'}") as c:
        yield c


def parsed(client: TestClient) -> Page:
    page = Page()
    page.feed(client.get("/dashboard").text)
    return page


def policy() -> dict[str, list[str]]:
    return {name: rest for name, *rest in (d.split() for d in CONTENT_SECURITY_POLICY.split(";"))}


def test_dashboard_when_requested_without_a_token_then_the_page_with_a_strict_csp(
    client: TestClient,
) -> None:
    r = client.get("/dashboard")
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    assert r.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] == "no-referrer"
    csp = policy()
    assert csp["default-src"] == ["'none'"]
    assert csp["script-src"] == ["'self'"]  # no inline script, no eval, no other origin
    assert csp["style-src"] == ["'self'", *PLOTLY_STYLES]  # inline CSS only by its hash
    assert csp["connect-src"] == ["'self'"]
    assert csp["frame-ancestors"] == ["'none'"]
    assert "unsafe" not in CONTENT_SECURITY_POLICY


def test_csp_when_its_first_style_hash_is_checked_then_it_is_the_empty_strings() -> None:
    empty = base64.b64encode(hashlib.sha256(b"").digest()).decode()
    assert PLOTLY_STYLES[0] == f"'sha256-{empty}'"


def test_dashboard_when_parsed_then_no_inline_code_and_only_this_origins_assets(
    client: TestClient,
) -> None:
    page = parsed(client)
    assert page.inline_code == []
    assert page.handlers == []
    assert [s.get("src") for s in page.scripts] == [PLOTLY_URL, "/dashboard/static/dashboard.js"]
    assert all("defer" in s for s in page.scripts)
    assert sorted(page.urls) == sorted(
        [
            "data:,",  # no favicon request
            "/dashboard/static/dashboard.css",
            PLOTLY_URL,
            "/dashboard/static/dashboard.js",
        ]
    )


def test_plotly_when_fetched_then_the_packages_own_file_cached_for_a_year(
    client: TestClient,
) -> None:
    r = client.get(PLOTLY_URL)
    assert r.status_code == 200
    assert r.content == PLOTLY_JS.read_bytes()
    assert r.headers["content-type"] == "text/javascript; charset=utf-8"
    assert r.headers["cache-control"] == "public, max-age=31536000, immutable"


@pytest.mark.parametrize(
    ("name", "media_type"),
    [("dashboard.js", "text/javascript"), ("dashboard.css", "text/css")],
)
def test_page_asset_when_fetched_then_the_file_revalidated_on_each_load(
    client: TestClient, name: str, media_type: str
) -> None:
    r = client.get(f"/dashboard/static/{name}")
    assert r.status_code == 200
    assert r.content == (ASSETS / name).read_bytes()
    assert r.headers["content-type"] == f"{media_type}; charset=utf-8"
    assert r.headers["cache-control"] == "no-cache"
    assert r.headers["etag"]
    again = client.get(f"/dashboard/static/{name}", headers={"If-None-Match": r.headers["etag"]})
    assert again.status_code == 304


@pytest.mark.parametrize(
    "name",
    [
        "index.html",
        "plotly.min.js",
        "plotly-0.0.0.min.js",
        "..%2Fapp.py",
        "%2e%2e%2fdeps.py",
        "missing.js",
    ],
)
def test_dashboard_asset_when_not_one_of_the_pages_then_404(client: TestClient, name: str) -> None:
    assert client.get(f"/dashboard/static/{name}").status_code == 404


def test_openapi_when_read_then_the_dashboard_is_not_an_api_operation(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert not [p for p in paths if p.startswith("/dashboard")]


def test_wheel_when_built_then_the_dashboard_assets_are_package_data(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    shutil.copy(ROOT / "pyproject.toml", source)
    shutil.copytree(
        ROOT / "serving", source / "serving", ignore=shutil.ignore_patterns("__pycache__")
    )
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(source),
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-q",
            "-w",
            str(tmp_path / "dist"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "dist").glob("tradeflow-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assets = {f"serving/dashboard/{p.name}" for p in ASSETS.iterdir() if p.is_file()}
    assert assets >= {
        f"serving/dashboard/{n}" for n in ("index.html", "dashboard.js", "dashboard.css")
    }
    assert assets <= names
