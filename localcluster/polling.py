"""Waiting for the cluster to get somewhere, with a message that says where it got stuck."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    check: Callable[[], T | None], *, timeout: float = 30.0, interval: float = 0.2, what: str
) -> T:
    """Call ``check`` until it returns something truthy, and return that.

    Exceptions from ``check`` count as "not yet"; the last one is chained to the
    TimeoutError raised after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    last_value: object = None
    while True:
        try:
            value = check()
            if value:
                return value
            last_value = value
        except Exception as error:
            last_error = error
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"timed out after {timeout:g}s waiting for {what} (last: {last_value!r})"
            ) from last_error
        time.sleep(interval)
