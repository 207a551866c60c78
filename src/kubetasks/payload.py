"""JSON values as stored in the task table (arguments, context, return values)."""

from __future__ import annotations

import json
import math
from typing import Any, TypeAlias

JSON: TypeAlias = Any
"""A value that survives ``json.dumps`` / ``json.loads``: None, bool, int, float, str, lists
and dicts with string keys. Kept as ``Any`` so that user signatures flow through unchanged."""


def dumps(value: Any) -> str:
    """Serialise strictly: no NaN, no silent conversion of unknown types."""
    return json.dumps(value, allow_nan=False, separators=(",", ":"), ensure_ascii=False)


def loads(text: str) -> Any:
    return json.loads(text)


def check_json(value: Any, path: str) -> None:
    """Raise ``TypeError`` naming the first part of ``value`` that JSON cannot carry faithfully.

    Tuples become lists and that is accepted; non-string dict keys, NaN and unknown types are not,
    because they would come back different or not at all.
    """
    if value is None or isinstance(value, (bool, int, str)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise TypeError(f"{path} is {value!r}, which JSON cannot represent")
        return
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            check_json(item, f"{path}[{index}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{path} has key {key!r} of type {type(key).__name__}; "
                                "JSON object keys must be str")
            check_json(item, f"{path}[{key!r}]")
        return
    raise TypeError(f"{path} is {value!r} of type {type(value).__module__}."
                    f"{type(value).__qualname__}, which is not JSON-serialisable "
                    "(use None, bool, int, float, str, list or dict)")
