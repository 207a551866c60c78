"""Values written as text, read the same way by the CLI, the worker and the operator."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import TypeVar

from kubetasks.exceptions import ConfigurationError

T = TypeVar("T")

DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> timedelta:
    """``90s``, ``15m``, ``12h``, ``7d`` or plain seconds; ``ValueError`` names the text."""
    unit = DURATION_UNITS.get(text[-1:], 1)
    number = text[:-1] if text[-1:] in DURATION_UNITS else text
    try:
        return timedelta(seconds=float(number) * unit)
    except ValueError:
        raise ValueError(f"duration {text!r} is invalid: use e.g. 90s, 15m, 12h or 7d") from None


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
