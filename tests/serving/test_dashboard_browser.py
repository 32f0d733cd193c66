"""The dashboard in a real browser: Debian's headless Chromium driven by Playwright, against the
real API served by uvicorn on a loopback port, over a SQLite ledger filled by an end-to-end run
of the decision services (real BTC and ETH candles, a fixed model, agents that buy then sell,
the paper exchange filling the orders).

What an operator relies on: the page shows that run's positions, open orders, decisions with
their votes and reasons, and its equity curve; the kill-switch button signs in the browser and
halts trading, the secret never leaving the page; the trading state flips. Screenshots are
written to var/screenshots/dashboard-*.png.

Chromium comes from apt (`make test` installs it); where it is missing these tests are skipped
and say so.
"""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
import uvicorn
from playwright.sync_api import Browser, Page, Request, expect, sync_playwright

from core.auth import Scope
from core.orders import OrderStatus
from core.safety.signing import sign
from infra.alerts import Alerts
from infra.ledger.database import engine_for
from infra.ledger.ledger import Ledger
from infra.settings import Settings
from services import bootstrap
from services.decide.replay import replay
from serving.app import SERVER_OPTIONS, create_app
from tests.services.decide.fakes import BUYERS, ROWS, SELLERS, SYMBOLS, FixedModel, config
from tests.serving.conftest import SECRET
from tests.serving.tokens import issue_token

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "var" / "screenshots"
CHROMIUM = shutil.which("chromium")
HAS_WS = (ROOT / "serving" / "routes" / "ws.py").is_file()

pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="Debian's chromium is not installed: `make test` installs it (apt-get install -y "
    "chromium); Playwright's own browser download is unreachable offline",
)


@dataclass
class Served:
    """The API over one end-to-end run's ledger, and what the browser saw of it."""

    base: str
    ledger: Ledger
    settings: Settings
    token: str
    requests: list[Request] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # console errors, CSP violations


def candles(ledger: Ledger, frames: tuple[pd.DataFrame, ...], rows: int) -> None:
    for symbol, frame in zip(SYMBOLS, frames, strict=True):
        ledger.candles.upsert("binance", symbol, "1h", frame.head(rows))


def end_to_end_run(settings: Settings, frames: tuple[pd.DataFrame, ...]) -> Ledger:
    """Ten candles decided with agents that buy (both symbols bought, filled at the next
    open by the paper exchange the API's kill switch also uses), then one more candle with
    agents that sell: two sell orders are left open, waiting for the next candle."""
    ledger = bootstrap.ledger(settings)  # migrated, with the paper account
    candles(ledger, frames, ROWS)
    replay(ledger, bootstrap.paper_exchange(settings), FixedModel(), BUYERS, config(), 10, Alerts())
    candles(ledger, frames, ROWS + 1)
    replay(
        ledger, bootstrap.paper_exchange(settings), FixedModel(0.1), SELLERS, config(), 1, Alerts()
    )
    assert len(ledger.fills.positions(settings.account)) == 2
    assert len(ledger.orders.open(settings.account)) == 2
    return ledger


@contextmanager
def serving(settings: Settings) -> Iterator[str]:
    """uvicorn on a free loopback port in a thread, as `tradeflow serve` runs it."""
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings), host="127.0.0.1", port=0, log_level="warning", **SERVER_OPTIONS
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        for _ in range(500):
            if server.started or not thread.is_alive():
                break
            threading.Event().wait(0.02)
        assert server.started, "uvicorn did not start"
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        launched = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--headless=new",
                "--disable-gpu",
                "--disable-background-networking",
            ],
        )
        yield launched
        launched.close()


@pytest.fixture
def served(tmp_path: Path, btc_1h: pd.DataFrame, eth_1h: pd.DataFrame) -> Iterator[Served]:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'ledger.db'}",
        kill_switch_secret=SECRET,
        var_dir=tmp_path,
        mlflow_tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        ws_heartbeat_s=1.0,
    )
    ledger = end_to_end_run(settings, (btc_1h, eth_1h))
    token = issue_token(ledger, Scope.READ, name="dashboard")
    with serving(settings) as base:
        yield Served(base, ledger, settings, token)
    engine_for(settings.ledger_url).dispose()  # one SQLite file per test: close it


# Chromium logs a CSP violation without saying what was blocked: this says it.
CSP_WATCH = """document.addEventListener("securitypolicyviolation", (e) => console.error(
  "CSP violation:", e.violatedDirective, JSON.stringify(e.sample), e.sourceFile));"""


@pytest.fixture
def page(browser: Browser, served: Served) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 1100})
    context.add_init_script(CSP_WATCH)
    opened = context.new_page()
    opened.on("request", lambda r: served.requests.append(r))
    opened.on("console", lambda m: m.type == "error" and served.problems.append(m.text))
    opened.on("pageerror", lambda e: served.problems.append(str(e)))
    yield opened
    context.close()


def screenshot(page: Page, name: str, full_page: bool = True) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"dashboard-{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    assert path.stat().st_size > 0
    return path


def connect(page: Page, served: Served) -> None:
    """Open the page and enter the token, as an operator does once per tab."""
    page.goto(f"{served.base}/dashboard")
    expect(page.locator("#token-panel")).to_be_visible()
    page.fill("#token-input", served.token)
    page.click("#token-save")
    expect(page.locator("#trading-state")).to_have_text("ACTIVE")


def cell(page: Page, table: str, row_id: str, column: str) -> str:
    return page.locator(f'#{table} tr[data-id="{row_id}"] td[data-col="{column}"]').inner_text()


def api_get(served: Served, path: str) -> Any:
    r = httpx.get(served.base + path, headers={"Authorization": f"Bearer {served.token}"})
    assert r.status_code == 200, r.text
    return r.json()


def test_dashboard_when_token_entered_then_shows_the_runs_positions_orders_and_decisions(
    page: Page, served: Served
) -> None:
    connect(page, served)
    account = served.settings.account
    positions = served.ledger.fills.positions(account)
    expect(page.locator("#positions tbody tr")).to_have_count(len(positions))
    for symbol, position in positions.items():
        assert Decimal(cell(page, "positions", symbol, "quantity")) == position.quantity
    open_orders = served.ledger.orders.open(account)
    rows = page.locator("#orders tbody tr")
    expect(rows).to_have_count(len(open_orders))
    assert {rows.nth(i).get_attribute("data-id") for i in range(len(open_orders))} == {
        o.client_order_id for o in open_orders
    }
    for order in open_orders:
        assert cell(page, "orders", order.client_order_id, "side") == order.side.value
    newest = sorted(served.ledger.orders.decisions(account), key=lambda d: d.decided_at)[-20:]
    items = page.locator("#decisions > li")
    expect(items).to_have_count(len(newest))
    shown = [items.nth(i).get_attribute("data-decision") for i in range(len(newest))]
    assert set(shown) == {d.decision_id for d in newest}
    sell = page.locator("#decisions > li", has=page.locator('.action[data-action="SELL"]'))
    expect(sell).to_have_count(2)  # the last candle's decisions, with both agents' votes
    expect(sell.first.locator(".votes li")).to_have_text(
        ["bull SELL (0.80): always SELL", "bear SELL (0.80): always SELL"]
    )
    screenshot(page, "loaded")
    assert served.problems == []  # no CSP violation, no script error


def test_dashboard_when_loaded_then_the_equity_curve_plots_the_apis_series(
    page: Page, served: Served
) -> None:
    connect(page, served)
    metrics = api_get(served, "/api/v1/metrics/trading")
    series = metrics["equity_curve"]
    assert series, "an end-to-end run with fills has an equity curve"
    page.wait_for_selector("#equity-chart .main-svg")
    plotted = page.evaluate(
        "() => { const d = document.getElementById('equity-chart').data;"
        " return {x: d[0].x, y: d[0].y, dd: d[1].y}; }"
    )
    # The curve's last point is "now", a moment apart between the page's call and this one.
    assert len(plotted["x"]) == len(series)
    assert plotted["x"][:-1] == [p["time"] for p in series][:-1]
    assert plotted["y"][:-1] == pytest.approx([float(p["equity"]) for p in series][:-1])
    assert plotted["dd"][:-1] == pytest.approx([-abs(p["drawdown"]) for p in series][:-1])
    assert min(plotted["dd"]) < 0  # the run lost on fees and slippage at least
    expect(page.locator('#metrics div[data-key="equity"] dd')).to_have_text(metrics["equity"])
    expect(page.locator('#metrics div[data-key="trades"] dd')).to_have_text(str(metrics["trades"]))
    screenshot(page, "equity")
    assert served.problems == []


def kill(page: Page, secret: str, reason: str = "browser drill", action: str = "activate") -> None:
    """Press the kill-switch button and fill its dialog, as an operator does."""
    if not page.locator("#kill-dialog").is_visible():
        page.click("#kill-open")
    expect(page.locator("#kill-dialog")).to_be_visible()
    page.check(f'input[name="action"][value="{action}"]')
    page.fill("#kill-reason", reason)
    page.fill("#kill-secret", secret)
    page.click("#kill-submit")


def test_kill_switch_when_signed_in_the_browser_then_trading_halts_and_the_state_flips(
    page: Page, served: Served
) -> None:
    connect(page, served)
    account = served.settings.account
    before = served.ledger.orders.open(account)
    kill(page, SECRET)
    answer = page.locator("#kill-answer")
    expect(answer).to_contain_text("Kill switch ACTIVE: trading halted")
    expect(answer).to_contain_text(f"{len(before)} order(s) cancelled")
    expect(page.locator("#trading-state")).to_have_text("HALTED")
    expect(page.locator("#kill-secret")).to_have_value("")  # dropped once signed
    screenshot(page, "kill-switch-answer", full_page=False)  # the dialog over the page
    assert served.ledger.safety.kill_switch().active
    assert served.ledger.safety.kill_switch().reason == "browser drill"
    statuses = {o.client_order_id: served.ledger.orders.get(o.client_order_id) for o in before}
    assert all(o is not None and o.status is OrderStatus.CANCELLED for o in statuses.values())
    page.click("#kill-cancel")
    expect(page.locator('#safety div[data-key="kill_switch"] dd')).to_have_text("ACTIVE")
    screenshot(page, "halted")
    assert served.problems == []


def test_kill_switch_when_released_in_the_browser_then_trading_resumes(
    page: Page, served: Served
) -> None:
    connect(page, served)
    kill(page, SECRET)
    expect(page.locator("#trading-state")).to_have_text("HALTED")
    kill(page, SECRET, reason="drill over", action="deactivate")
    expect(page.locator("#kill-answer")).to_have_text("Kill switch released: trading may resume.")
    expect(page.locator("#trading-state")).to_have_text("ACTIVE")
    state = served.ledger.safety.kill_switch()
    assert (state.active, state.reason) == (False, "drill over")
    assert served.problems == []


def test_kill_switch_when_signed_then_the_secret_never_leaves_the_page(
    page: Page, served: Served
) -> None:
    connect(page, served)
    kill(page, SECRET)
    expect(page.locator("#trading-state")).to_have_text("HALTED")
    posts = [r for r in served.requests if r.method == "POST"]
    assert [r.url for r in posts] == [f"{served.base}/api/v1/safety/kill-switch"]
    sent = posts[0]
    assert json.loads(sent.post_data or "") == {"action": "activate", "reason": "browser drill"}
    ts = int(sent.headers["x-kill-switch-timestamp"])
    assert sent.headers["x-kill-switch-signature"] == sign(SECRET, "activate", ts)
    for r in served.requests:  # not in any URL, header or body the page sent
        assert SECRET not in r.url + json.dumps(r.headers) + (r.post_data or "")
    stored = page.evaluate(
        "() => JSON.stringify([{...sessionStorage}, {...localStorage}, document.cookie])"
    )
    assert SECRET not in stored
    assert json.loads(stored) == [{"tradeflow.api-token": served.token}, {}, ""]


def test_kill_switch_when_the_secret_is_wrong_then_refused_and_trading_goes_on(
    page: Page, served: Served
) -> None:
    connect(page, served)
    kill(page, "not-the-secret-" + "0" * 30)
    expect(page.locator("#kill-answer")).to_contain_text("Refused (HTTP 401)")
    expect(page.locator("#kill-answer")).to_contain_text("signature")
    page.click("#kill-cancel")
    page.reload()  # the token stays for the tab: no second prompt
    expect(page.locator("#trading-state")).to_have_text("ACTIVE")
    assert not served.ledger.safety.kill_switch().active
    assert len(served.ledger.orders.open(served.settings.account)) == 2


def test_dashboard_when_no_token_then_asks_for_one_and_reads_no_data(
    page: Page, served: Served
) -> None:
    page.goto(f"{served.base}/dashboard")
    expect(page.locator("#token-panel")).to_be_visible()
    expect(page.locator("#panels")).to_be_hidden()
    screenshot(page, "token")
    assert [r.url for r in served.requests if "/api/v1/" in r.url] == []


def test_dashboard_when_the_token_is_refused_then_forgets_it_and_asks_again(
    page: Page, served: Served
) -> None:
    page.goto(f"{served.base}/dashboard")
    page.fill("#token-input", "tf_000000000000_" + "x" * 43)
    page.click("#token-save")
    expect(page.locator("#token-message")).to_contain_text("token was refused")
    expect(page.locator("#panels")).to_be_hidden()
    assert page.evaluate("() => sessionStorage.length") == 0


def test_dashboard_when_the_token_is_forgotten_then_it_and_the_data_are_gone(
    page: Page, served: Served
) -> None:
    connect(page, served)
    expect(page.locator("#positions tbody tr")).to_have_count(2)
    page.click("#token-forget")
    expect(page.locator("#token-panel")).to_be_visible()
    expect(page.locator("#positions tbody tr")).to_have_count(0)
    expect(page.locator("#decisions > li")).to_have_count(0)
    expect(page.locator("#live")).to_have_text("offline")
    assert page.evaluate("() => sessionStorage.length") == 0


@pytest.mark.skipif(not HAS_WS, reason="the WebSocket route (serving/routes/ws.py) is not built")
def test_trading_state_when_the_kill_switch_is_activated_elsewhere_then_flips_live(
    page: Page, served: Served
) -> None:
    connect(page, served)
    expect(page.locator("#live")).to_have_text("live")
    ts = int(pd.Timestamp.now(tz="UTC").timestamp())
    r = httpx.post(
        f"{served.base}/api/v1/safety/kill-switch",
        json={"action": "activate", "reason": "from the CLI"},
        headers={
            "X-Kill-Switch-Timestamp": str(ts),
            "X-Kill-Switch-Signature": sign(SECRET, "activate", ts),
        },
    )
    assert r.status_code == 200, r.text
    expect(page.locator("#trading-state")).to_have_text("HALTED")  # no reload, no poll
    expect(page.locator('#safety div[data-key="kill_switch_reason"] dd')).to_have_text(
        "from the CLI"
    )


@pytest.mark.skipif(not HAS_WS, reason="the WebSocket route (serving/routes/ws.py) is not built")
def test_decisions_when_a_new_candle_is_decided_after_load_then_the_panel_updates_live(
    page: Page, served: Served, btc_1h: pd.DataFrame, eth_1h: pd.DataFrame
) -> None:
    connect(page, served)
    expect(page.locator("#live")).to_have_text("live")
    items = page.locator("#decisions > li")
    expect(items).to_have_count(20)
    candles(served.ledger, (btc_1h, eth_1h), ROWS + 2)
    replay(
        served.ledger,
        bootstrap.paper_exchange(served.settings),
        FixedModel(0.1),
        SELLERS,
        config(),
        1,
        Alerts(),
    )
    newest = max(
        served.ledger.orders.decisions(served.settings.account), key=lambda d: d.candle_time
    )
    expect(page.locator(f'#decisions > li[data-decision="{newest.decision_id}"]')).to_have_count(1)
