from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kubetasks import InvalidTaskError
from kubetasks.backoff import ExponentialBackoff, PatternBackoff, as_backoff


@given(attempt=st.integers(min_value=1, max_value=200))
def test_exponential_backoff_stays_within_its_ceiling(attempt: int) -> None:
    backoff = ExponentialBackoff(base=2, factor=3, maximum=600)
    ceiling = min(600, 2 * 3 ** (attempt - 1))
    assert 0 <= backoff.delay(attempt) <= ceiling
    assert ExponentialBackoff(base=2, factor=3, maximum=600, jitter=False).delay(attempt) == ceiling


def test_pattern_backoff_follows_queue_job_semantics() -> None:
    backoff = as_backoff({3: 10, 5: 60})
    assert [backoff.delay(a) for a in range(1, 8)] == [0, 0, 10, 10, 60, 60, 60]


@pytest.mark.parametrize(("pattern", "message"), [
    ({}, "is empty"),
    ({0: 10}, "key 0 is invalid"),
    ({1: -5}, "delay -5 for attempt 1 is invalid"),
])
def test_bad_patterns_are_refused(pattern: dict[int, float], message: str) -> None:
    with pytest.raises(InvalidTaskError, match=message):
        PatternBackoff.from_mapping(pattern)


def test_as_backoff_refuses_other_values() -> None:
    with pytest.raises(InvalidTaskError, match="retry_backoff 'fast' is invalid"):
        as_backoff("fast")  # type: ignore[arg-type]
