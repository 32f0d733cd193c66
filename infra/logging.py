"""Log lines: one JSON object per line (or readable console lines), from stdlib and structlog
loggers alike, each with the correlation id bound in services/correlation.py, and never a
configured secret.

- structlog renders through stdlib logging (structlog.stdlib.ProcessorFormatter): a structlog
  logger and a `logging.getLogger(...)` logger come out the same way, on one handler on the
  root logger, and every other handler (Prefect's, which sends `tradeflow*` records to the
  flow run's logs) still receives the records.
- Prefect's API handler gets a formatter that appends the bound context
  (`... correlation_id=paper:BTC/USDT:1h:1706950800`) to the message it sends: the run's logs in
  the Prefect UI carry the id too. Attached as soon as Prefect's logging is set up, whichever
  of Prefect and this module was configured first.
- Secrets: every value of a secret setting (SecretStr fields, fields named like a secret, a
  password in a URL, an alert URL's credentials), any `Authorization: ...` or `Bearer ...`
  value and any API token `tf_<id>_<secret>` becomes "***". SecretFilter cleans each record
  as it is made (a record factory: the message with its arguments, a structlog event's values,
  the traceback), so no handler, Prefect's or a test's, ever sees the secret; each formatter
  cleans what only it renders (`extra=` fields, a structlog event's traceback) once more.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any, TextIO
from urllib.parse import quote, urlsplit
from uuid import UUID

import structlog
from pydantic import SecretBytes, SecretStr
from structlog.stdlib import ProcessorFormatter
from structlog.types import EventDict, Processor, WrappedLogger

from infra.settings import Settings, get_settings

REDACTED = "***"
# Shorter values are not redacted: a secret of a few characters would blank common words in
# every line (a local LLM server's api key "x", say); nothing that short protects anything.
MIN_SECRET_CHARS = 8
HANDLER_NAME = "tradeflow"
# Our own loggers: `tradeflow.*` (sent to Prefect runs) and the packages' module loggers. They
# log at the configured level; every other library at WARNING, as Python and Prefect default.
FIRST_PARTY = ("tradeflow", "core", "services", "infra", "registry", "serving", "tasks", "flows")
# Prefect's loggers whose API handler sends a flow run's logs (PREFECT_LOGGING_EXTRA_LOGGERS
# gives `tradeflow` the same handler object as prefect.extra).
PREFECT_RUN_LOGGERS = ("prefect.extra", "prefect.flow_runs", "prefect.task_runs")
# uvicorn's copy of its message with terminal colours; what another handler's Formatter left
# on the record (the message again, its time).
_NOISE = ("color_message", "message", "asctime")
_SECRET_FIELD = re.compile(r"secret|password|token|api_key", re.IGNORECASE)
# Values kept as they are (JSON renders them, and they cannot hold a secret).
_PLAIN = (Enum, bool, int, float, Decimal, datetime, date, UUID, type(None))
_KEEP = frozenset({"exc_info"})  # rendered (then redacted) by the formatter


# --- secrets ------------------------------------------------------------------------------


def secret_values(settings: Settings) -> tuple[str, ...]:
    """Every secret the settings hold, as it could appear in a line."""
    found: set[str] = set()
    for name in type(settings).model_fields:
        found.update(_secrets_in(name, getattr(settings, name)))
    return tuple(sorted(s for s in found if len(s) >= MIN_SECRET_CHARS))


def _secrets_in(name: str, value: object) -> Iterator[str]:
    if isinstance(value, SecretStr):
        yield value.get_secret_value()
    elif isinstance(value, SecretBytes):
        yield value.get_secret_value().decode(errors="replace")
    elif isinstance(value, str):
        if _SECRET_FIELD.search(name):
            yield value
        if "://" in value:
            yield from _url_secrets(name, value)
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _secrets_in(name, item)
    elif isinstance(value, tuple | list | set | frozenset):
        for item in value:
            yield from _secrets_in(name, item)


def _url_secrets(name: str, url: str) -> Iterator[str]:
    """A URL's password; an alert URL's whole tail, and each piece of its path and query
    (apprise URLs carry their tokens there: tgram://bottoken/chat, slack://TokenA/TokenB/TokenC,
    and apprise logs the path on its own)."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # not a URL after all
        return
    if password:
        yield password
    if name.startswith("alert_"):
        yield url.split("://", 1)[1]
        host = parts.netloc.rsplit("@", 1)[-1]
        if "." not in host and host != "localhost":  # tgram://<bot token>/<chat>: not a host
            yield host
        yield from (p for p in parts.path.split("/") if p)
        yield from (v for item in parts.query.split("&") for v in item.split("=")[1:] if v)


def _spellings(secret: str) -> set[str]:
    """The secret as written, inside a JSON or Python string literal, and percent-encoded."""
    return {secret, json.dumps(secret)[1:-1], repr(secret)[1:-1], quote(secret, safe="")}


# What a credential looks like, whoever configured it. Kept: the header and scheme words, a
# URL's user name. ("Basic" alone is a word of prose; after "Authorization:" it is a scheme.)
_SHAPES = (
    r"(?P<auth>\b(?i:authorization)[\"']?\s*[:=]\s*[\"']?(?:(?i:bearer|basic|token|digest)\s+)?)"
    r"[^\s\"',;}]{8,}",  # an Authorization header's value
    r"(?P<bearer>\b[Bb]earer\s+)[A-Za-z0-9._~+/=-]{8,}",  # a bearer token anywhere else
    r"\btf_[A-Za-z0-9]+_[A-Za-z0-9_-]{8,}",  # an API token, tf_<id>_<secret>
    r"(?P<user>\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@]*:)[^\s@/]+(?=@)",  # a URL's password
)


class Redactor:
    """Replaces every secret value and credential-shaped text with "***"."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        spelled = {s for secret in secrets for s in _spellings(secret) if s}
        # Longest first: a secret that contains another is replaced whole.
        literals = [re.escape(s) for s in sorted(spelled, key=len, reverse=True)]
        self._pattern = re.compile("|".join([*literals, *_SHAPES]))

    def __call__(self, text: str) -> str:
        return self._pattern.sub(self._replacement, text)

    @staticmethod
    def _replacement(match: re.Match[str]) -> str:
        kept = match.group("auth") or match.group("bearer") or match.group("user")
        return (kept or "") + REDACTED

    def scrub(self, value: object) -> object:
        """A value of an event, cleaned: strings redacted, containers walked, anything else
        rendered to its text first (an exception's message may quote a key)."""
        if isinstance(value, str):
            return self(value)
        if isinstance(value, _PLAIN):
            return value
        if isinstance(value, Mapping):
            return {k: self.scrub(v) for k, v in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return [self.scrub(v) for v in value]
        return self(str(value))


def _clean_event(redact: Redactor, event: Mapping[str, Any]) -> dict[str, Any]:
    """Every value redacted but the processors' own (`_record`...) and exc_info (rendered, and
    redacted then, by the formatter)."""
    return {k: v if k in _KEEP or k.startswith("_") else redact.scrub(v) for k, v in event.items()}


@dataclass(frozen=True)
class RedactEvent:
    """structlog processor: every value of the event dict redacted."""

    redact: Redactor

    def __call__(self, _: WrappedLogger, __: str, event: EventDict) -> EventDict:
        return _clean_event(self.redact, event)


class SecretFilter(logging.Filter):
    """A record redacted in place: its message with the arguments filled in (a structlog
    event's values), and its traceback's text. Never drops a record."""

    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self.redact = redact

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, dict):  # a structlog event (or a dict logged as such)
            record.msg = _clean_event(self.redact, record.msg)
        else:
            self._clean_message(record)
        if record.exc_info and not record.exc_text:
            trace = _TRACEBACKS.formatException(record.exc_info)
            if (clean_trace := self.redact(trace)) != trace:
                record.exc_text = clean_trace  # what Formatter.format prints for exc_info
        return True

    def _clean_message(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except Exception:  # a bad format string: the handler reports it, as logging does
            return
        clean = self.redact(text)
        if clean != text:
            record.msg, record.args = clean, ()


_TRACEBACKS = logging.Formatter()


# --- rendering ----------------------------------------------------------------------------


def _record_facts(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    """Time, level and logger from the record itself (when it was made, not formatted), first
    in the line, then the message, then the rest."""
    record: logging.LogRecord = event["_record"]
    return {
        "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(),
        "level": event.pop("level", record.levelname.lower()),
        "logger": event.pop("logger", record.name),
        "event": event.pop("event", ""),
        **event,
    }


def _drop_noise(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    for key in _NOISE:
        event.pop(key, None)
    return event


def _run_line(_: WrappedLogger, __: str, event: EventDict) -> str:
    """A Prefect run's log line: the message, then the bound context as key=value (Prefect
    shows level, logger and time itself)."""
    message = str(event.pop("event", ""))
    trace = event.pop("exception", None)
    for key in ("level", "logger", "timestamp"):
        event.pop(key, None)
    line = " ".join([message, *(f"{k}={v}" for k, v in event.items())])
    return f"{line}\n{trace}" if trace else line


class RunLogFormatter(ProcessorFormatter):
    """What Prefect's API handler sends: the message with the bound context appended."""


def _formatter(
    redact: Redactor,
    renderer: Processor,
    extras: bool,
    kind: type[ProcessorFormatter] = ProcessorFormatter,
) -> ProcessorFormatter:
    pre: list[Processor] = [structlog.contextvars.merge_contextvars]
    if extras:  # `extra=` fields of stdlib calls (and Prefect's run ids) become keys
        pre += [structlog.stdlib.ExtraAdder(), _drop_noise]
    return kind(
        foreign_pre_chain=pre,
        processors=[
            _record_facts,
            ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            RedactEvent(redact),
            renderer,
        ],
    )


def line_formatter(settings: Settings, redact: Redactor, stream: TextIO) -> ProcessorFormatter:
    """The process's own lines: JSON, or console lines (coloured on a terminal)."""
    if settings.log_format == "json":
        return _formatter(redact, structlog.processors.JSONRenderer(default=str), extras=True)
    colors = bool(getattr(stream, "isatty", lambda: False)())
    return _formatter(redact, structlog.dev.ConsoleRenderer(colors=colors), extras=True)


def run_log_formatter(redact: Redactor) -> ProcessorFormatter:
    """Prefect's run logs: the message and the bound context; no `extra=` fields (Prefect's
    own run ids among them), no level or time (Prefect shows its own)."""
    return _formatter(redact, _run_line, extras=False, kind=RunLogFormatter)


class StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stderr is when a record comes (a CLI run redirects it to its log
    file while its progress display owns the terminal)."""

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _: TextIO) -> None:
        pass


# --- configuration ------------------------------------------------------------------------


@dataclass
class _State:
    """What configure_logging changed in this process, so it can be redone or undone."""

    secrets: SecretFilter = field(default_factory=lambda: SecretFilter(Redactor()))
    handler: logging.Handler | None = None
    factory: Callable[..., logging.LogRecord] | None = None  # the one ours wraps
    prefect_pending: bool = False
    levels: dict[str, int] = field(default_factory=dict)  # loggers' levels before us
    original: list[logging.Handler] | None = None  # the root's handlers before the first set-up


_STATE = _State()


def configure_logging(settings: Settings, stream: TextIO | None = None) -> logging.Handler:
    """Set up this process's logging from `settings` (again: the previous set-up is replaced).
    Lines go to `stream`, default whatever sys.stderr is at the time. Returns the handler."""
    redact = Redactor(secret_values(settings))
    _STATE.secrets = SecretFilter(redact)
    handler = StderrHandler() if stream is None else logging.StreamHandler(stream)
    handler.set_name(HANDLER_NAME)
    # Records below the level are not ours to print: a progress display lowers its logger's
    # level for the records it draws from.
    handler.setLevel(settings.log_level)
    handler.setFormatter(line_formatter(settings, redact, stream or sys.stderr))
    _install_handler(handler, logging.getLevelName(settings.log_level))
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            ProcessorFormatter.wrap_for_formatter,  # the record factory redacts the event
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    if _STATE.factory is None:
        _STATE.factory = logging.getLogRecordFactory()
        logging.setLogRecordFactory(_make_record)
    _STATE.prefect_pending = True
    _attach_to_prefect()
    return handler


def is_configured() -> bool:
    """Whether configure_logging has run in this process (and not been reset)."""
    return _STATE.handler is not None


def _install_handler(handler: logging.Handler, level: int) -> None:
    """Ours on the root logger, in place of our previous one and of any console handler
    (Prefect's): one line per record on the process's output."""
    root = logging.getLogger()
    if _STATE.original is None:  # what reset_logging puts back, in its order
        _STATE.original = list(root.handlers)
    for old in list(root.handlers):
        if old.name == HANDLER_NAME or _is_console(old):
            root.removeHandler(old)
    root.addHandler(handler)
    _STATE.handler = handler
    for name in ("", *FIRST_PARTY):
        logger = logging.getLogger(name)
        _STATE.levels.setdefault(name, logger.level)
        logger.setLevel(max(logging.WARNING, level) if name == "" else level)


def _is_console(handler: logging.Handler) -> bool:
    if not isinstance(handler, logging.StreamHandler) or handler.name == HANDLER_NAME:
        return False
    if type(handler).__name__ == "PrefectConsoleHandler":
        return True
    consoles = (sys.stderr, sys.stdout, sys.__stderr__, sys.__stdout__)
    return any(handler.stream is c for c in consoles)


def _make_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
    """The record factory: every record redacted before any handler sees it; and, once
    Prefect's logging exists, its API handler given our formatter."""
    # After reset_logging a factory chained onto ours may still call it: make plain records.
    record = (_STATE.factory or logging.LogRecord)(*args, **kwargs)
    _STATE.secrets.filter(record)
    if _STATE.prefect_pending:
        _attach_to_prefect()
    return record


def _attach_to_prefect() -> None:
    """Give Prefect's API handlers our run-log formatter (unless someone set their own). Done
    once Prefect has set its logging up; never imports Prefect (the API does not need it)."""
    if "prefect.logging.handlers" not in sys.modules:
        return
    handlers = _prefect_handlers()
    if not handlers:  # Prefect is importing: its logging is not set up yet
        return
    formatter = run_log_formatter(_STATE.secrets.redact)
    for handler in handlers:
        if handler.formatter is None or isinstance(handler.formatter, RunLogFormatter):
            handler.setFormatter(formatter)
    _STATE.prefect_pending = False


def _prefect_handlers() -> list[logging.Handler]:
    from prefect.logging.handlers import APILogHandler

    found: dict[int, logging.Handler] = {}
    for name in PREFECT_RUN_LOGGERS:
        for handler in logging.getLogger(name).handlers:
            if isinstance(handler, APILogHandler):
                found[id(handler)] = handler
    return list(found.values())


def reset_logging() -> None:
    """Undo configure_logging: the handlers, levels, record factory, structlog and Prefect's
    formatters as they were (tests, and a process that hands logging back)."""
    global _STATE
    root = logging.getLogger()
    if _STATE.handler is not None:
        root.removeHandler(_STATE.handler)
    if _STATE.original is not None:  # ours gone, the replaced ones back where they were
        added = [h for h in root.handlers if h not in _STATE.original]
        root.handlers[:] = [*_STATE.original, *added]
    for name, level in _STATE.levels.items():
        logging.getLogger(name).setLevel(level)
    if _STATE.factory is not None:
        logging.setLogRecordFactory(_STATE.factory)
    if "prefect.logging.handlers" in sys.modules:
        for handler in _prefect_handlers():
            if isinstance(handler.formatter, RunLogFormatter):
                handler.setFormatter(None)  # type: ignore[arg-type]
    structlog.reset_defaults()
    _STATE = _State()


def uvicorn_log_config() -> dict[str, Any]:
    """uvicorn's log_config for `tradeflow serve`: applied in every worker process (a spawned
    worker configures its own logging), it sets ours up from the environment's settings and
    lets uvicorn's own loggers propagate to it (its start-up lines at INFO)."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {HANDLER_NAME: {"()": f"{__name__}.handler_from_environment"}},
        "root": {"handlers": [HANDLER_NAME]},
        # uvicorn's loggers at INFO and into ours, whatever set them before (importing Prefect
        # configures its own logging, uvicorn's loggers included).
        "loggers": {
            name: {"level": "INFO", "handlers": [], "propagate": True}
            for name in ("uvicorn", "uvicorn.error")
        },
    }


def handler_from_environment() -> logging.Handler:
    """configure_logging with the settings of the environment (a uvicorn worker's)."""
    return configure_logging(get_settings())
