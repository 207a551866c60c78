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


def plain(value: Any, path: str) -> JSON:
    """``value`` as every reader will see it after a JSON round trip (tuples become lists,
    subclasses of int, float, str, list and dict their base types), copied, in one walk.

    Raise ``TypeError`` naming the first part of ``value`` that JSON cannot carry faithfully:
    non-string dict keys, NaN, unknown types, text PostgreSQL cannot store, ints past
    ``MAX_INT_DIGITS`` and nesting past ``MAX_DEPTH`` would come back different, or not at all.
    The part's name (``path`` and the indexes and keys to it) is only written on that error.
    """
    try:
        return _plain(value, 0)
    except _NotPlain as error:
        raise TypeError(f"{path}{''.join(reversed(error.where))}{error.what}") from None


class _NotPlain(Exception):
    """A part of a value JSON cannot carry: ``what`` is wrong with it, ``where`` the indexes
    and keys to it, innermost first (each container adds its own on the way out)."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what
        self.where: list[str] = []


_PLAIN_TYPES = frozenset({type(None), bool, int, float, str, list, tuple, dict})


def _plain(value: Any, depth: int) -> JSON:
    kind = type(value)  # an identity test per type is several times cheaper than isinstance
    if kind not in _PLAIN_TYPES:
        kind = _plain_base(value)
    if value is None or kind is bool:
        return value
    if kind is int:
        if not -_INT_BOUND < value < _INT_BOUND:
            raise _NotPlain(f" is an int of more than {MAX_INT_DIGITS} digits "
                            f"({value.bit_length()} bits); pass it as a str")
        return int.__int__(value)
    if kind is str:
        _checked_text(value, "")
        return str.__str__(value)
    if kind is float:
        if not math.isfinite(value):
            raise _NotPlain(f" is {value!r}, which JSON cannot represent")
        return float.__float__(value)
    if depth >= MAX_DEPTH:
        raise _NotPlain(f" is nested more than {MAX_DEPTH} lists or dicts deep")
    if kind is dict:
        copy = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise _NotPlain(f" has key {key!r} of type {type(key).__name__}; "
                                "JSON object keys must be str")
            _checked_text(key, " key")
            try:
                copy[str.__str__(key)] = _plain(item, depth + 1)
            except _NotPlain as error:
                error.where.append(f"[{_abridged(key)}]")
                raise
        return copy
    copied = []  # a list or a tuple
    for index, item in enumerate(value):
        try:
            copied.append(_plain(item, depth + 1))
        except _NotPlain as error:
            error.where.append(f"[{index}]")
            raise
    return copied


def _plain_base(value: Any) -> type:
    """The JSON type a subclass stands for (bool before int: a bool is an int)."""
    for base in (bool, int, str, float, list, tuple, dict):
        if isinstance(value, base):
            return base
    raise _NotPlain(f" is {value!r} of type {type(value).__module__}.{type(value).__qualname__}, "
                    "which is not JSON-serialisable (use None, bool, int, float, str, list or "
                    "dict)")


def _checked_text(text: str, what: str) -> None:
    try:
        check_text(text, what)
    except ValueError as error:
        raise _NotPlain(str(error)) from None


def _abridged(text: str, limit: int = 60) -> str:
    """``repr`` of at most ``limit`` characters, for messages."""
    shown = repr(text[:limit])
    return shown if len(text) <= limit else f"{shown}... ({len(text)} characters)"
