"""How long to wait before the next attempt of a failed task — pure functions of the attempt."""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from kubetasks.exceptions import InvalidTaskError


class Backoff(Protocol):
    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1 for the first)."""
        ...


@dataclass(frozen=True, slots=True)
class ExponentialBackoff:
    """``base * factor ** (attempt - 1)`` seconds, capped, with full jitter by default.

    Full jitter (a uniform draw in ``[0, delay]``) spreads the retries of tasks that failed
    together, e.g. when a dependency went down, instead of sending them back in one wave.
    """

    base: float = 1.0
    factor: float = 2.0
    maximum: float = 3600.0
    jitter: bool = True

    def delay(self, attempt: int) -> float:
        ceiling = min(self.maximum, self.base * self.factor ** max(0, attempt - 1))
        return random.uniform(0, ceiling) if self.jitter else ceiling


@dataclass(frozen=True, slots=True)
class PatternBackoff:
    """A queue_job-style pattern: ``{1: 10, 5: 60}`` waits 10 s after attempts 1-4, then 60 s."""

    pattern: tuple[tuple[int, float], ...]

    @classmethod
    def from_mapping(cls, pattern: Mapping[int, float]) -> PatternBackoff:
        if not pattern:
            raise InvalidTaskError("retry pattern {} is empty: give {attempt: seconds, ...}")
        for attempt, seconds in pattern.items():
            if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 1:
                raise InvalidTaskError(f"retry pattern key {attempt!r} is invalid: use attempts >= 1")
            if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0:
                raise InvalidTaskError(
                    f"retry pattern delay {seconds!r} for attempt {attempt} is invalid: "
                    "use seconds >= 0")
        return cls(tuple(sorted((a, float(s)) for a, s in pattern.items())))

    def delay(self, attempt: int) -> float:
        chosen = 0.0
        for threshold, seconds in self.pattern:
            if attempt >= threshold:
                chosen = seconds
        return chosen


def as_backoff(value: Backoff | Mapping[int, float] | None) -> Backoff:
    """The task's ``retry_backoff`` argument as a Backoff: a mapping is a pattern."""
    if value is None:
        return ExponentialBackoff()
    if isinstance(value, Mapping):
        return PatternBackoff.from_mapping(value)
    if callable(getattr(value, "delay", None)):
        return value
    raise InvalidTaskError(
        f"retry_backoff {value!r} is invalid: use a mapping like {{3: 10, 5: 60}} "
        "or an object with delay(attempt)"
    )
