"""Any value the client accepts round-trips through PostgreSQL and the worker: what a worker
binds to the task function is what the caller passed (JSON-normalised), whatever the value."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubetasks import InvalidTaskError, task
from kubetasks.backends import PostgresBackend
from kubetasks.identity import WorkerIdentity
from kubetasks.store import Store
from kubetasks.worker.attempt import prepare

QUEUE = "roundtrip"


@task(name="roundtrip.echo", queue_name=QUEUE)
def echo(*args: Any, **kwargs: Any) -> None:
    return None


def _power_of_ten(digits: int) -> int:
    """An int of ``abs(digits)`` digits, negative for negative ``digits``."""
    return (1 if digits > 0 else -1) * 10 ** (abs(digits) - 1)


def _zone(offset: timedelta) -> Any:
    return timezone(offset)


def _nested(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


texts = st.text(st.characters(codec=None, exclude_categories=()), max_size=8)
ints = st.integers() | st.sampled_from([-4300, 4299, 4300, 5000]).map(_power_of_ten)
scalars = st.none() | st.booleans() | ints | st.floats() | texts
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.tuples(inner)
                      | st.dictionaries(texts, inner, max_size=3), max_leaves=12)
deep = st.integers(1, 150).map(_nested)
offsets = st.timedeltas(min_value=timedelta(hours=-23, minutes=-59),
                        max_value=timedelta(hours=23, minutes=59))
times = st.builds(lambda when, offset: when.replace(tzinfo=_zone(offset)),
                  st.datetimes(), offsets) | st.timedeltas(min_value=timedelta(0))


def same(stored: Any, given: Any) -> bool:
    """Equal as JSON values: jsonb keeps numbers as numerics, so a float may come back as the
    int it equals in decimal (1e23 as 10**23)."""
    if isinstance(given, float) or isinstance(stored, float):
        return (isinstance(stored, (int, float)) and not isinstance(stored, bool)
                and math.isclose(stored, given, rel_tol=1e-15, abs_tol=0.0))
    if isinstance(given, list):
        return isinstance(stored, list) and len(stored) == len(given) and all(
            same(s, g) for s, g in zip(stored, given, strict=True))
    if isinstance(given, dict):
        return isinstance(stored, dict) and stored.keys() == given.keys() and all(
            same(stored[k], given[k]) for k in given)
    return type(stored) is type(given) and bool(stored == given)


@pytest.mark.timeout(300)
@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(args=st.lists(values | deep, max_size=3), kwargs=st.dictionaries(texts, values, max_size=2),
       run_after=st.none() | times, expected_at=st.none() | times)
def test_what_the_client_accepts_the_worker_gets_back(
        *, backend: PostgresBackend, store: Store, args: list[Any], kwargs: dict[str, Any],
        run_after: Any, expected_at: Any) -> None:
    try:
        result = echo.using(run_after=run_after, expected_at=expected_at).enqueue(*args, **kwargs)
    except InvalidTaskError:
        return  # refused, with a message: nothing written
    before = datetime.now(UTC)
    record = store.get(result.id)
    normal = json.loads(json.dumps(args)), json.loads(json.dumps(kwargs))
    assert same(record.args, normal[0]) and same(record.kwargs, normal[1])
    if isinstance(run_after, datetime):
        assert record.run_after == run_after
    if isinstance(expected_at, datetime):
        assert record.expected_at == expected_at
    if record.run_after <= before:  # due: a worker can claim it and bind its arguments
        claimed = store.claim([QUEUE], 10, WorkerIdentity("pod", "uid", "nonce"))
        assert [r.id for r in claimed] == [record.id]
        call = prepare(claimed[0])
        assert same(call.args, normal[0]) and same(call.kwargs, normal[1])
