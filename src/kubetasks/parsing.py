"""Values written as text, read the same way by the CLI, the worker and the operator."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import TypeVar

from kubetasks.exceptions import ConfigurationError

T = TypeVar("T")

DURATION_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_NUMBER = r"\d+(?:\.\d+)?"
_SECONDS = re.compile(_NUMBER)
_PARTS = re.compile(f"(?:{_NUMBER}[dhms])+")
_PART = re.compile(f"({_NUMBER})([dhms])")


def parse_duration(text: str) -> timedelta:
    """A duration as people write it: ``90s``, ``15m``, ``1h30m``, ``2d12h``, or plain seconds
    (``90``, ``0.5``). A leading ``-`` makes it negative, for the caller to refuse by its own
    bounds with its own option named. ``ValueError`` names the text.

    >>> parse_duration("1h30m")
    datetime.timedelta(seconds=5400)
    """
    body = text.strip()
    sign = -1 if body.startswith("-") else 1
    body = body.removeprefix("-")
    if _SECONDS.fullmatch(body):
        seconds = float(body)
    elif _PARTS.fullmatch(body):
        seconds = sum(float(number) * DURATION_UNITS[unit] for number, unit in _PART.findall(body))
    else:
        raise ValueError(f"duration {text!r} is invalid: use e.g. 90s, 15m, 1h30m or 2d12h")
    try:
        return timedelta(seconds=sign * seconds)
    except OverflowError:
        raise ValueError(f"duration {text!r} is too long") from None


def format_duration(value: timedelta) -> str:
    """The inverse of ``parse_duration``, to whole seconds: ``1h30m``, ``2d12h``, ``0s``."""
    seconds = round(abs(value.total_seconds()))
    parts: list[str] = []
    for unit, size in DURATION_UNITS.items():
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return ("-" if value < timedelta(0) else "") + ("".join(parts) or "0s")


def parse_bool(text: str) -> bool:
    """``true``/``false``, and the usual spellings of each: ``1``/``0``, ``yes``/``no``,
    ``on``/``off``."""
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("use true or false")


def parse_port(text: str) -> int:
    value = int(text) if text.strip().isdigit() else -1
    if not 0 <= value <= 65535:
        raise ValueError("use a port from 1 to 65535, or 0 to pick a free one")
    return value


def parse_names(text: str) -> tuple[str, ...]:
    """A comma-separated list, blanks dropped: ``"a, b,"`` is ``("a", "b")``."""
    return tuple(name.strip() for name in text.split(",") if name.strip())


def from_env(env: Mapping[str, str], variable: str, parse: Callable[[str], T], default: T) -> T:
    """``variable`` parsed, or ``default`` when it is unset or empty; a bad value is refused
    with the variable, the value and what would be accepted."""
    text = env.get(variable)
    if not text:
        return default
    try:
        return parse(text)
    except ValueError as error:
        raise ConfigurationError(f"{variable}={text!r} is invalid: {error}") from None
