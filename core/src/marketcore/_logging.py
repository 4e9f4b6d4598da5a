"""Logging of a node: JSON or text lines, rate-limited per kind, never a secret.

Every line carries ``component``, ``symbol`` and ``node_id`` (from ``extra=`` or, for
``node_id``, from the node whose task logs), and whatever other fields the caller
passed in ``extra=`` (``elapsed_ms``, ``cycle``, ``kind``, …), so a log pipeline can
filter and aggregate without parsing sentences.

Floods are cut at the handler: at most ``burst`` records of one *kind* — logger, message
template and ``extra["kind"]`` — pass per ``interval_s``; the rest are counted, and the
count rides on the next record of that kind that passes (field ``suppressed``) or is
reported at shutdown. A bad feed repeating one error a thousand times a second writes a
handful of lines and a number.

Secrets are removed from everything written: the password of any URL
(``redis://user:***@host``, ``rediss://``, sentinel URLs alike), values of keys named
like a password, secret or API key in logged mappings and ``key=value`` text, and the
literal values of secret-looking environment variables (``…PASSWORD``, ``…SECRET``,
``…TOKEN``, ``…API_KEY``), wherever they would appear. ``token`` alone is redacted only
as a string value of a mapping: marketcore's writer tokens are not secrets, and hiding
them would make fencing problems impossible to follow.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import re
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from typing import Any

__all__ = [
    "FORMATS",
    "LEVELS",
    "JsonFormatter",
    "RateLimitFilter",
    "TextFormatter",
    "configure_logging",
    "flush_suppressed",
    "node_context",
    "redact",
    "redact_value",
    "suppressed_total",
]

FORMATS = ("text", "json")
LEVELS = ("debug", "info", "warning", "error", "critical")
REDACTED = "***"

NODE_ID: ContextVar[str | None] = ContextVar("marketcore_node_id", default=None)
"""The node the current task belongs to; set by the runtime for the life of a node."""


@contextlib.contextmanager
def node_context(node_id: str) -> Iterator[None]:
    """Stamp ``node_id`` on every record logged from this context and the tasks it starts."""
    token = NODE_ID.set(node_id)
    try:
        yield
    finally:
        NODE_ID.reset(token)


# ---------------------------------------------------------------------------
# Redaction
# ---------------------------------------------------------------------------

_SECRET_WORDS = (r"password|passwd|pwd|secret|api[-_]?key|access[-_]?key|private[-_]?key"
                 r"|credentials?|auth[-_]?token|access[-_]?token|refresh[-_]?token")
_SECRET_KEY = re.compile(rf"(?i)({_SECRET_WORDS}|(?:^|[-_.])token$)")
"""A mapping key whose string value is a secret (``token`` only as a whole word at the end)."""

_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)([^\s:/@'\"]*):([^\s@/'\"]+)@")
_QUERY_SECRET = re.compile(rf"(?i)([?&](?:{_SECRET_WORDS}|token)=)[^&\s'\"]+")
_ASSIGNED_SECRET = re.compile(
    rf"(?i)(\b[\w.-]*(?:{_SECRET_WORDS})\s*=\s*['\"]?)([^\s'\",;&)}}\]]+)")
_QUOTED_SECRET = re.compile(
    rf"(?i)(['\"][\w.-]*(?:{_SECRET_WORDS}|token)['\"]\s*:\s*['\"])([^'\"]+)(['\"])")
_SECRET_VARIABLE = re.compile(r"(?i)(password|passwd|secret|token|api_?key|credential)")
MIN_LITERAL = 4
"""Environment values shorter than this are not replaced literally (they would mangle text)."""

_literals: tuple[str, ...] = ()


def secrets_from_environment(environ: Mapping[str, str]) -> tuple[str, ...]:
    """Values to hide wherever they appear: secret-named variables and URL passwords."""
    found: set[str] = set()
    for name, value in environ.items():
        if _SECRET_VARIABLE.search(name) and len(value) >= MIN_LITERAL:
            found.add(value)
        for match in _URL_USERINFO.finditer(value):
            if len(match.group(3)) >= MIN_LITERAL:
                found.add(match.group(3))
    return tuple(sorted(found, key=len, reverse=True))  # longest first: no partial leftovers


def redact(text: str) -> str:
    """``text`` without URL passwords, ``password=…`` values or known secret values."""
    text = _URL_USERINFO.sub(rf"\1\2:{REDACTED}@", text)
    text = _QUERY_SECRET.sub(rf"\1{REDACTED}", text)
    text = _ASSIGNED_SECRET.sub(rf"\1{REDACTED}", text)
    text = _QUOTED_SECRET.sub(rf"\1{REDACTED}\3", text)
    for literal in _literals:
        if literal in text:
            text = text.replace(literal, REDACTED)
    return text


def redact_value(value: Any, key: str = "") -> Any:
    """A copy of ``value`` safe to log: secret-named string values replaced, text redacted.

    Mappings and sequences are walked (to a small depth); other objects are kept as
    they are and redacted as text when they are finally written.
    """
    return _redact(value, key, 0)


def _redact(value: Any, key: str, depth: int) -> Any:
    if isinstance(value, str | bytes) and key and _SECRET_KEY.search(key) and value:
        return REDACTED
    if isinstance(value, str):
        return redact(value)
    if depth >= 4:
        return value
    if isinstance(value, Mapping):
        return {k: _redact(v, str(k), depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_redact(v, "", depth + 1) for v in value)
    return value


def _message(record: logging.LogRecord) -> str:
    """The record's message with its arguments redacted first, then the text itself."""
    args = record.args
    if args:
        args = (_redact(args, "", 0) if isinstance(args, Mapping)
                else tuple(_redact(a, "", 1) for a in args))
        try:
            text = str(record.msg) % args
        except (TypeError, ValueError, KeyError):
            text = record.getMessage()
    else:
        text = str(record.msg)
    return redact(text)


# ---------------------------------------------------------------------------
# Formatters
# ---------------------------------------------------------------------------

_STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
_OWN = frozenset({"component", "symbol", "node_id", "suppressed"})


def _component(record: logging.LogRecord) -> str:
    component = getattr(record, "component", None)
    if component:
        return str(component)
    name = record.name
    for prefix in ("marketcore.", "marketcore_"):
        if name.startswith(prefix):
            return name[len(prefix):]
    return name


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {key: _redact(value, key, 0) for key, value in vars(record).items()
            if key not in _STANDARD and key not in _OWN and not key.startswith("_")}


def _jsonable(value: Any) -> Any:
    return redact(str(value))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``component``, ``symbol``,
    ``node_id``, ``message``, the caller's ``extra=`` fields, ``exc`` and ``suppressed``."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "component": _component(record),
            "symbol": getattr(record, "symbol", None),
            "node_id": getattr(record, "node_id", None) or NODE_ID.get(),
            "message": _message(record),
        }
        line.update(_extras(record))
        if record.exc_info:
            line["exc"] = redact(self.formatException(record.exc_info))
        elif record.exc_text:
            line["exc"] = redact(record.exc_text)
        suppressed = getattr(record, "suppressed", 0)
        if suppressed:
            line["suppressed"] = suppressed
        return json.dumps(line, default=_jsonable, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``time LEVEL logger [node component symbol]: message key=value …``, redacted."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s")

    def format(self, record: logging.LogRecord) -> str:
        head = super().format(logging.makeLogRecord(
            {"name": record.name, "levelname": record.levelname, "created": record.created,
             "msecs": record.msecs}))
        context = [c for c in (getattr(record, "node_id", None) or NODE_ID.get(),
                               getattr(record, "component", None),
                               getattr(record, "symbol", None)) if c]
        text = f"{head}{' [' + ' '.join(map(str, context)) + ']' if context else ''}: "
        text += _message(record)
        extras = _extras(record)
        if extras:
            text += " " + " ".join(f"{k}={redact(str(v))}" for k, v in extras.items())
        suppressed = getattr(record, "suppressed", 0)
        if suppressed:
            text += f" (+{suppressed} like it suppressed)"
        if record.exc_info:
            text += "\n" + redact(self.formatException(record.exc_info))
        return text


# ---------------------------------------------------------------------------
# Rate limiting
# ---------------------------------------------------------------------------


class _Window:
    __slots__ = ("passed", "start", "suppressed")

    def __init__(self, start: float) -> None:
        self.start = start
        self.passed = 1
        self.suppressed = 0


class RateLimitFilter(logging.Filter):
    """At most ``burst`` records per kind per ``interval_s``; the rest are counted.

    A kind is (logger, message template, ``extra["kind"]``): "sink %s failed" is one
    kind whatever the sink, "skipped %s input" with ``kind="crossed"`` another than with
    ``kind="garbage"``. At most ``max_kinds`` kinds are tracked (the oldest are
    forgotten), so memory stays bounded whatever is logged.
    """

    def __init__(self, *, burst: int = 5, interval_s: float = 10.0, max_kinds: int = 4096,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.burst = burst
        self.interval_s = interval_s
        self.max_kinds = max_kinds
        self.clock = clock
        self.suppressed_total = 0
        self._windows: OrderedDict[tuple[str, str, str], _Window] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def kind_of(record: logging.LogRecord) -> tuple[str, str, str]:
        template = record.msg if isinstance(record.msg, str) else type(record.msg).__name__
        return record.name, template, str(getattr(record, "kind", ""))

    def filter(self, record: logging.LogRecord) -> bool:
        kind = self.kind_of(record)
        now = self.clock()
        with self._lock:
            window = self._windows.get(kind)
            if window is None or now - window.start >= self.interval_s:
                if window is not None and window.suppressed:
                    record.suppressed = window.suppressed
                self._windows[kind] = _Window(now)
                self._windows.move_to_end(kind)
                while len(self._windows) > self.max_kinds:
                    self._windows.popitem(last=False)
                return True
            if window.passed < self.burst:
                window.passed += 1
                return True
            window.suppressed += 1
            self.suppressed_total += 1
            return False

    def take_pending(self) -> list[tuple[tuple[str, str, str], int]]:
        """Kinds with suppressed records not yet reported, and their counts; clears them."""
        with self._lock:
            pending = [(kind, w.suppressed) for kind, w in self._windows.items() if w.suppressed]
            for kind, _count in pending:
                self._windows[kind].suppressed = 0
        return pending


# ---------------------------------------------------------------------------
# Setup
# ---------------------------------------------------------------------------


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a record is emitted (as logging's
    last-resort handler does), so a captured or replaced stderr is always honoured."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


_installed: _StderrHandler | None = None
_limiter: RateLimitFilter | None = None


def configure_logging(*, format: str = "text", level: str = "warning", burst: int = 5,
                      interval_s: float = 10.0, environ: Mapping[str, str] | None = None) -> None:
    """Send every log record to stderr in ``format`` at ``level`` and above.

    Idempotent: a second call replaces the handler the first installed (other handlers,
    such as pytest's, are left alone). Secret values are collected from ``environ``
    (default: ``os.environ``) now, so later lines can never show them.
    """
    global _installed, _limiter, _literals
    if format not in FORMATS:
        raise ValueError(f"log format: expected one of {', '.join(FORMATS)}, found {format!r}")
    if level.lower() not in LEVELS:
        raise ValueError(f"log level: expected one of {', '.join(LEVELS)}, found {level!r}")
    _literals = secrets_from_environment(os.environ if environ is None else environ)
    root = logging.getLogger()
    handler = _StderrHandler()
    handler.setFormatter(JsonFormatter() if format == "json" else TextFormatter())
    limiter = RateLimitFilter(burst=burst, interval_s=interval_s)
    if _limiter is not None:
        limiter.suppressed_total = _limiter.suppressed_total
    handler.addFilter(limiter)
    if _installed is not None:
        root.removeHandler(_installed)
    root.addHandler(handler)
    root.setLevel(level.upper())
    _installed, _limiter = handler, limiter


def flush_suppressed() -> None:
    """Report the kinds whose suppressed records no later record carried (at shutdown)."""
    if _limiter is None:
        return
    for (name, template, _kind), count in _limiter.take_pending():
        logging.getLogger(name).warning(
            "%d more records like %r were suppressed by the rate limit", count, template[:120],
            extra={"suppressed": count})


def suppressed_total() -> int:
    """Records dropped by the rate limit since logging was configured (0 if it was not)."""
    return 0 if _limiter is None else _limiter.suppressed_total
