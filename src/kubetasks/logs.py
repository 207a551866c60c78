"""Structured logs: JSON lines in containers, plain lines on a terminal; and no secret in
either (``redact``, ``RedactSecrets``)."""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}
_PLAIN = (str, int, float, bool, list, dict, type(None))


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the record's ``extra=`` fields at top level."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        # Only plain values: libraries attach whole objects (kopf: its settings) to records.
        entry.update({k: v for k, v in record.__dict__.items()
                      if k not in _STANDARD and isinstance(v, _PLAIN)})
        exception = _exception(self, record)
        if exception:
            entry["exception"] = exception
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        extra = " ".join(f"{k}={v}" for k, v in record.__dict__.items()
                         if k not in _STANDARD and isinstance(v, _PLAIN))
        line = f"{self.formatTime(record, '%H:%M:%S')} {record.levelname:<7} {record.getMessage()}"
        if extra:
            line += f"  [{extra}]"
        exception = _exception(self, record)
        if exception:
            line += "\n" + exception
        return line


def _exception(formatter: logging.Formatter, record: logging.LogRecord) -> str:
    """The record's traceback, as ``RedactSecrets`` left it masked in ``exc_text``."""
    if record.exc_text:
        return record.exc_text
    return formatter.formatException(record.exc_info) if record.exc_info else ""


def setup_logging(level: str = "INFO", *, json_lines: bool | None = None) -> None:
    """JSON when stderr is not a terminal (containers), text otherwise."""
    handler = logging.StreamHandler(sys.stderr)
    use_json = not sys.stderr.isatty() if json_lines is None else json_lines
    handler.setFormatter(JsonFormatter() if use_json else TextFormatter())
    handler.addFilter(RedactSecrets())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


# -- secrets -----------------------------------------------------------------------------------

REDACTED = "***"

_URL = re.compile(r"^\s*postgres(?:ql)?://", re.IGNORECASE)
_URL_PASSWORD = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/?#@'\"]*:)[^\s'\"]*@")
_KEYWORD_PASSWORD = re.compile(r"(\b(?:ssl)?password\s*=\s*)('(?:\\.|[^'\\])*'|[^\s&'\"]+)", re.IGNORECASE)
_KEYWORD = re.compile(r"\s*([A-Za-z_]+)\s*=\s*('(?:\\.|[^'\\])*'|\S*)\s*")
_QUOTED = re.compile(r"\"([^\"]+)\"|'([^']+)'")
_LIBPQ_KEYWORDS = frozenset({
    "host", "hostaddr", "port", "dbname", "user", "password", "passfile", "channel_binding",
    "connect_timeout", "client_encoding", "options", "application_name",
    "fallback_application_name", "keepalives", "keepalives_idle", "keepalives_interval",
    "keepalives_count", "tcp_user_timeout", "replication", "gssencmode", "sslmode",
    "sslnegotiation", "sslcompression", "sslcert", "sslkey", "sslpassword", "sslcertmode",
    "sslrootcert", "sslcrl", "sslcrldir", "sslsni", "requirepeer", "ssl_min_protocol_version",
    "ssl_max_protocol_version", "krbsrvname", "gsslib", "gssdelegation", "service",
    "target_session_attrs", "load_balance_hosts", "require_auth",
})
_MIN_FRAGMENT = 4  # shorter passwords are masked where they stand in a URL or password=...


@dataclass(frozen=True, slots=True)
class _Secret:
    text: str
    spans: tuple[tuple[int, int], ...]  # where its passwords are (the whole text if opaque)

    @property
    def shown(self) -> str:
        """The text with its passwords masked: a URL still names its host and database."""
        shown, end = [], 0
        for start, stop in self.spans:
            shown += [self.text[end:start], REDACTED]
            end = stop
        return "".join([*shown, self.text[end:]])

    @property
    def passwords(self) -> set[str]:
        words = {self.text[start:stop] for start, stop in self.spans}
        return {w for word in words for w in (word, unquote(word)) if len(w) >= _MIN_FRAGMENT}

    def covers(self, fragment: str) -> bool:
        """Whether ``fragment``, quoted in a message, is a piece of this secret's passwords."""
        start = self.text.find(fragment)
        while start >= 0:
            if any(start < stop and start + len(fragment) > begin for begin, stop in self.spans):
                return True
            start = self.text.find(fragment, start + 1)
        return False


def _password_spans(value: str) -> tuple[tuple[int, int], ...]:
    """Where the passwords of a database URL or conninfo string are; all of ``value`` when it
    is neither (a Secret key holding something else): then every piece of it is secret."""
    if _URL.match(value):
        spans = []
        start = value.index("://") + 3
        at = value.rfind("@")
        colon = value.find(":", start, at)
        if at > start and colon >= 0:
            spans.append((colon + 1, at))
        spans += [m.span(2) for m in _KEYWORD_PASSWORD.finditer(value, max(at, start))]
        return tuple(spans)
    keywords = list(_KEYWORD.finditer(value))
    if (keywords and "".join(m.group(0) for m in keywords) == value
            and all(m.group(1).lower() in _LIBPQ_KEYWORDS for m in keywords)):
        return tuple(m.span(2) for m in keywords
                     if m.group(1).lower() in ("password", "sslpassword"))
    return ((0, len(value)),) if value else ()


_secrets: dict[str, _Secret] = {}
_secrets_lock = threading.Lock()


MIN_QUOTED_PIECE = 4
"""The shortest quoted fragment of a message that is masked for being a piece of a password."""


def register_secret(value: str | None) -> None:
    """Never log ``value`` (a database URL, conninfo string, password or Secret value), nor
    its password, nor a quoted piece of either: :func:`redact` and every kubetasks log line
    mask them from now on."""
    if value and value not in _secrets:
        with _secrets_lock:
            _secrets[value] = _Secret(value, _password_spans(value))


def redact(text: str) -> str:
    """``text`` without any password: registered secrets are shown masked (a URL keeps its
    host), quoted pieces of their passwords (as the driver quotes a URL it cannot parse)
    become ``***``, and so do the passwords of any URL or ``password=`` in the text.

    >>> redact("connection to postgresql://app:hunter2@db/app failed")
    'connection to postgresql://app:***@db/app failed'
    """
    known = sorted(_secrets.values(), key=lambda s: len(s.text), reverse=True)
    for secret in known:
        if secret.text in text:
            text = text.replace(secret.text, secret.shown)

    def quoted(match: re.Match[str]) -> str:
        fragment = match.group(1) or match.group(2)
        # A quoted value shorter than MIN_QUOTED_PIECE (the '0' of "--max-running '0' is
        # invalid") says nothing of a password; a whole short password is masked below.
        if len(fragment) >= MIN_QUOTED_PIECE and any(secret.covers(fragment) for secret in known):
            return match.group(0).replace(fragment, REDACTED)
        return match.group(0)

    text = _QUOTED.sub(quoted, text)
    for password in sorted({p for s in known for p in s.passwords}, key=len, reverse=True):
        text = text.replace(password, REDACTED)
    text = _URL_PASSWORD.sub(rf"\1{REDACTED}@", text)
    return _KEYWORD_PASSWORD.sub(rf"\1{REDACTED}", text)


class RedactSecrets(logging.Filter):
    """Masks secrets in every record before any formatter sees it: the message with its
    arguments, the exception, and the string fields given with ``extra=``."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)  # formatters use it as it stands
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        for key, value in list(record.__dict__.items()):
            if key not in _STANDARD and isinstance(value, str):
                record.__dict__[key] = redact(value)
        return True
