"""JSON values as stored in the task table (arguments, context, return values)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any, TypeAlias

JSON: TypeAlias = Any
"""A value that survives ``json.dumps`` / ``json.loads``: None, bool, int, float, str, lists
and dicts with string keys. Kept as ``Any`` so that user signatures flow through unchanged."""


_ENCODER = json.JSONEncoder(allow_nan=False, separators=(",", ":"), ensure_ascii=False)
"""One encoder for every call: ``json.dumps`` with options builds a new one each time."""


_EMPTY: dict[type, str] = {dict: "{}", list: "[]"}
"""Most kwargs and contexts are empty: their JSON without an encoder call."""


def dumps(value: Any) -> str:
    """Serialise strictly: no NaN, no silent conversion of unknown types."""
    if not value and type(value) in _EMPTY:
        return _EMPTY[type(value)]
    return _ENCODER.encode(value)


_EMPTY_LOADED: dict[str | bytes, Callable[[], Any]] = {"[]": list, "{}": dict, b"[]": list,
                                                       b"{}": dict}
"""Most kwargs, contexts and error lists are empty, and the server writes them exactly so: each
read builds a new one without a parser (a claimed row has four jsonb columns)."""


def loads(text: str | bytes) -> Any:
    """A stored value. Bytes, as psycopg passes a jsonb value, are parsed as text: ``json.loads``
    of bytes first works out their encoding."""
    empty = _EMPTY_LOADED.get(text)
    if empty is not None:
        return empty()
    return json.loads(text if isinstance(text, str) else text.decode())


MAX_DEPTH = 100
"""Deepest nesting of lists and dicts stored: every reader (Python's JSON decoder, PostgreSQL's
jsonb) must get through it without running out of stack."""

MAX_INT_DIGITS = 4300
"""Longest int stored, in decimal digits: Python's default limit for turning text into an int,
which every worker reading the row must pass."""

_INT_BOUND = 10 ** MAX_INT_DIGITS


def check_text(text: str, what: str) -> None:
    """Raise ``ValueError`` if PostgreSQL cannot store ``text``: NUL characters, or lone
    surrogates (which have no UTF-8 encoding)."""
    if "\x00" in text:
        raise ValueError(f"{what} {_abridged(text)} contains the NUL character (\\x00), "
                         "which PostgreSQL cannot store")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as error:
            raise ValueError(f"{what} {_abridged(text)} contains the lone surrogate "
                             f"{text[error.start]!r}, which UTF-8 cannot encode") from None


def plain(value: Any, path: str, depth: int = 0) -> JSON:
    """``value`` as every reader will see it after a JSON round trip (tuples become lists,
    subclasses of int, float, str, list and dict their base types), copied, in one walk.

    Raise ``TypeError`` naming the first part of ``value`` that JSON cannot carry faithfully:
    non-string dict keys, NaN, unknown types, text PostgreSQL cannot store, ints past
    ``MAX_INT_DIGITS`` and nesting past ``MAX_DEPTH`` would come back different, or not at all.
    """
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        if not -_INT_BOUND < value < _INT_BOUND:
            raise TypeError(f"{path} is an int of more than {MAX_INT_DIGITS} digits "
                            f"({value.bit_length()} bits); pass it as a str")
        return int.__int__(value)
    if isinstance(value, str):
        _checked_text(value, path)
        return str.__str__(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise TypeError(f"{path} is {value!r}, which JSON cannot represent")
        return float.__float__(value)
    if isinstance(value, (list, tuple, dict)) and depth >= MAX_DEPTH:
        raise TypeError(f"{path} is nested more than {MAX_DEPTH} lists or dicts deep")
    if isinstance(value, (list, tuple)):
        return [plain(item, f"{path}[{index}]", depth + 1) for index, item in enumerate(value)]
    if isinstance(value, dict):
        copy = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{path} has key {key!r} of type {type(key).__name__}; "
                                "JSON object keys must be str")
            _checked_text(key, f"{path} key")
            copy[str.__str__(key)] = plain(item, f"{path}[{_abridged(key)}]", depth + 1)
        return copy
    raise TypeError(f"{path} is {value!r} of type {type(value).__module__}."
                    f"{type(value).__qualname__}, which is not JSON-serialisable "
                    "(use None, bool, int, float, str, list or dict)")


def _checked_text(text: str, what: str) -> None:
    try:
        check_text(text, what)
    except ValueError as error:
        raise TypeError(str(error)) from None


def _abridged(text: str, limit: int = 60) -> str:
    """``repr`` of at most ``limit`` characters, for messages."""
    shown = repr(text[:limit])
    return shown if len(text) <= limit else f"{shown}... ({len(text)} characters)"
