"""Log lines: JSON from stdlib and structlog loggers alike, the bound correlation id on each,
every configured secret replaced before any handler (ours, Prefect's, a test's) sees it; the
set-up undone as it was; uvicorn's workers set up the same way; Prefect's run-log handler
given the correlation id whether Prefect or our logging was set up first."""

from __future__ import annotations

import io
import json
import logging
import logging.config
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import structlog
from pydantic import SecretStr

from infra.logging import (
    HANDLER_NAME,
    Redactor,
    configure_logging,
    reset_logging,
    secret_values,
    uvicorn_log_config,
)
from infra.settings import Settings, get_settings
from services.correlation import bound

ROOT = Path(__file__).resolve().parents[2]
KILL = "kill-switch-secret-0123456789abcdef0123456789abcdef"
API_KEY = "exchange-key-AKIA1234567890"
API_SECRET = 'exchange"secret\\with-quotes-42'  # JSON and repr escape it differently
LLM_KEY = "sk-llm-0123456789abcdef"
DB_PASSWORD = "db-pass-9f8e7d6c"
ALERT_TOKEN = "bottoken-123456789abcdef"
TOKEN = "tf_0123456789ab_" + "A" * 20 + "-_" + "b" * 21  # an API token, tf_<12 hex>_<43>
DECISION = "paper:BTC/USDT:1h:1706950800"


def secret_settings(**values: object) -> Settings:
    return Settings(
        kill_switch_secret=SecretStr(KILL),
        exchange_api_key=SecretStr(API_KEY),
        exchange_api_secret=SecretStr(API_SECRET),
        llm_api_key=SecretStr(LLM_KEY),
        database_url=f"postgresql+psycopg://trader:{DB_PASSWORD}@127.0.0.1:5432/test",
        alert_urls=(f"tgram://{ALERT_TOKEN}/4242",),
        **values,  # type: ignore[arg-type]
    )


SECRETS = (KILL, API_KEY, API_SECRET, LLM_KEY, DB_PASSWORD, ALERT_TOKEN, TOKEN)


@dataclass
class Captured:
    stream: io.StringIO

    def lines(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.stream.getvalue().splitlines()]

    @property
    def text(self) -> str:
        return self.stream.getvalue()


@pytest.fixture
def captured() -> Iterator[Captured]:
    stream = io.StringIO()
    configure_logging(secret_settings(), stream)
    try:
        yield Captured(stream)
    finally:
        reset_logging()


class Records(logging.Handler):
    """Another handler on the root logger (Prefect's or pytest's would be one): what it gets."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("%(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def other_handler() -> Iterator[Records]:
    handler = Records()
    logging.getLogger().addHandler(handler)
    try:
        yield handler
    finally:
        logging.getLogger().removeHandler(handler)


def test_configure_logging_when_stdlib_and_structlog_log_then_json_lines_with_correlation_id(
    captured: Captured,
) -> None:
    with bound(correlation_id=DECISION):
        logging.getLogger("tradeflow.orders").info("order %s sent", "tf-1", extra={"qty": 2})
        structlog.get_logger("tradeflow.decisions").info("decided", symbol="BTC/USDT")
    logging.getLogger("tradeflow.orders").warning("after the block")
    first, second, third = captured.lines()
    assert first["event"] == "order tf-1 sent"
    assert (first["level"], first["logger"], first["qty"]) == ("info", "tradeflow.orders", 2)
    assert first["correlation_id"] == second["correlation_id"] == DECISION
    assert (second["event"], second["symbol"], second["logger"]) == (
        "decided",
        "BTC/USDT",
        "tradeflow.decisions",
    )
    assert "correlation_id" not in third
    assert list(first)[:4] == ["timestamp", "level", "logger", "event"]


def test_configure_logging_when_levels_set_then_our_debug_and_libraries_info_are_dropped(
    captured: Captured,
) -> None:
    logging.getLogger("tradeflow.orders").debug("too detailed")
    logging.getLogger("httpx").info("HTTP Request: GET http://127.0.0.1/")
    logging.getLogger("services.execution").info("kept")
    logging.getLogger("httpx").warning("kept too")
    assert [line["event"] for line in captured.lines()] == ["kept", "kept too"]


def test_configure_logging_when_console_format_then_readable_lines_not_json() -> None:
    stream = io.StringIO()
    configure_logging(Settings(log_format="console"), stream)
    try:
        with bound(correlation_id=DECISION):
            logging.getLogger("tradeflow.x").warning("halted")
    finally:
        reset_logging()
    line = stream.getvalue()
    assert "halted" in line
    assert f"correlation_id={DECISION}" in line
    with pytest.raises(json.JSONDecodeError):
        json.loads(line)


def test_secret_values_when_settings_hold_secrets_then_each_found_and_short_ones_left() -> None:
    found = secret_values(secret_settings())
    for secret in (KILL, API_KEY, API_SECRET, LLM_KEY, DB_PASSWORD, ALERT_TOKEN):
        assert secret in found
    assert f"{ALERT_TOKEN}/4242" in found  # the alert URL's whole tail
    # A local LLM server's key "x" would blank every x in every line: not a secret to redact.
    assert secret_values(Settings(llm_api_key=SecretStr("x"))) == ()


def test_redactor_when_text_holds_secrets_and_credentials_then_each_is_stars() -> None:
    redact = Redactor([API_KEY, API_SECRET])
    text = (
        f"key={API_KEY} json={json.dumps(API_SECRET)} repr={API_SECRET!r} "
        f"Authorization: Bearer {TOKEN} token {TOKEN} {{'authorization': 'Basic dXNlcjpwYXNz'}} "
        "bearer abcdefgh1234 url redis://:hunter2@127.0.0.1:6379/0 and postgresql://bob:pw@h/db"
    )
    clean = redact(text)
    assert clean == (
        "key=*** json=\"***\" repr='***' Authorization: Bearer *** token *** "
        "{'authorization': 'Basic ***'} bearer *** url redis://:***@127.0.0.1:6379/0 and "
        "postgresql://bob:***@h/db"
    )
    # Text without a secret is left alone: client order ids look a little like tokens, and
    # "basic" or "bearer" in prose is not a scheme.
    prose = (
        "order tf-0123abcd filled, tf_model ready; basic settings; the bearer of news; "
        "authorization: denied"
    )
    assert redact(prose) == prose


def test_configure_logging_when_secrets_logged_every_way_then_no_handler_sees_one(
    captured: Captured, other_handler: Records
) -> None:
    log = logging.getLogger("tradeflow.leaky")
    log.warning("keys %s %s", API_KEY, LLM_KEY, extra={"auth": f"Bearer {TOKEN}"})
    log.warning(f"database postgresql+psycopg://trader:{DB_PASSWORD}@127.0.0.1/test")
    log.warning({"secret": KILL})  # not a string at all
    structlog.get_logger("tradeflow.leaky").warning(
        "structured", secret=API_SECRET, nested={"alert": f"tgram://{ALERT_TOKEN}/4242"}
    )
    try:
        raise RuntimeError(f"exchange refused key {API_KEY}")
    except RuntimeError:
        log.exception("call failed")
        structlog.get_logger("tradeflow.leaky").exception("call failed again")
    seen = captured.text + "\n".join(other_handler.lines)
    assert len(captured.lines()) == 6
    assert "exchange refused key ***" in seen  # the tracebacks were there, cleaned
    assert "Bearer ***" in seen
    for secret in SECRETS:
        assert secret not in seen
        assert json.dumps(secret)[1:-1] not in seen


def test_reset_logging_when_called_then_handlers_levels_factory_and_structlog_restored() -> None:
    root = logging.getLogger()
    before = (list(root.handlers), root.level, logging.getLogRecordFactory())
    level_before = logging.getLogger("tradeflow").level
    configure_logging(Settings(log_level="DEBUG"), io.StringIO())
    assert any(h.name == HANDLER_NAME for h in root.handlers)
    assert logging.getLogger("tradeflow").level == logging.DEBUG
    configure_logging(Settings(), io.StringIO())  # again: replaces, never stacks
    assert sum(h.name == HANDLER_NAME for h in root.handlers) == 1
    reset_logging()
    assert (list(root.handlers), root.level, logging.getLogRecordFactory()) == before
    assert logging.getLogger("tradeflow").level == level_before
    assert not structlog.is_configured()


def test_uvicorn_log_config_when_applied_in_a_worker_then_our_handler_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TRADEFLOW_EXCHANGE_API_KEY", API_KEY)
    get_settings.cache_clear()
    try:
        logging.config.dictConfig(uvicorn_log_config())
        [handler] = [h for h in logging.getLogger().handlers if h.name == HANDLER_NAME]
        logging.getLogger("uvicorn.error").info("Uvicorn running on http://127.0.0.1:8000")
        logging.getLogger("tradeflow.api").warning("key %s", API_KEY)
    finally:
        reset_logging()
        get_settings.cache_clear()
    err = capsys.readouterr().err  # the handler writes to whatever sys.stderr is
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert [line["event"] for line in lines] == [
        "Uvicorn running on http://127.0.0.1:8000",
        "key ***",
    ]
    assert handler not in logging.getLogger().handlers


# `from prefect import flow` (as every flow module does) sets Prefect's logging up.
PREFECT_FIRST = """
import logging
from prefect import flow
from infra.logging import configure_logging
from infra.settings import Settings
from services.correlation import bound
configure_logging(Settings())
"""
LOGGING_FIRST = """
import logging
from infra.logging import configure_logging
from infra.settings import Settings
from services.correlation import bound
configure_logging(Settings())
from prefect import flow
logging.getLogger("prefect.startup").warning("first record after Prefect's set-up")
"""
CHECK = """
from prefect.logging.handlers import APILogHandler
[api] = {h for h in logging.getLogger("tradeflow").handlers if isinstance(h, APILogHandler)}
with bound(correlation_id="paper:BTC/USDT:1h:1706950800"):
    record = logging.getLogger("tradeflow.decisions").makeRecord(
        "tradeflow.decisions", logging.INFO, "check.py", 1, "decided %s", ("BTC/USDT",), None
    )
    print(api.format(record))
"""


@pytest.mark.parametrize("order", [PREFECT_FIRST, LOGGING_FIRST])
def test_prefect_run_logs_when_either_set_up_first_then_message_carries_correlation_id(
    order: str,
) -> None:
    """In an interpreter of its own: Prefect sets its logging up once, when imported."""
    result = subprocess.run(
        [sys.executable, "-c", order + CHECK],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == (
        "decided BTC/USDT correlation_id=paper:BTC/USDT:1h:1706950800"
    )
