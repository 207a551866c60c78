"""A value that is not JSON is refused with ``NotJSONError``: kubetasks' ``InvalidTaskError``
and the ``TypeError`` Django raises, so code written for either catches it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from kubetasks import InvalidTaskError, NotJSONError, configure, task
from kubetasks.backends import DummyBackend


@task
def greet(name: object) -> str:
    return f"hello {name}"


@pytest.fixture
def dummy() -> Iterator[DummyBackend]:
    backend = configure("dummy")
    assert isinstance(backend, DummyBackend)
    backend.clear()
    yield backend
    backend.clear()


@pytest.mark.parametrize("value", [datetime(2026, 1, 1, tzinfo=UTC), {1: "x"}, float("nan")])
def test_an_argument_that_is_not_json_is_both_errors_and_nothing_is_written(
        value: object, dummy: DummyBackend) -> None:
    with pytest.raises(NotJSONError) as raised:
        greet.enqueue(value)
    assert isinstance(raised.value, TypeError) and isinstance(raised.value, InvalidTaskError)
    assert "task tests.unit.test_not_json_error.greet: args[0]" in str(raised.value)
    assert dummy.results == []


def test_a_context_that_is_not_json_is_refused_the_same_way(dummy: DummyBackend) -> None:
    with pytest.raises(TypeError, match="context"):
        greet.using(context={"when": datetime(2026, 1, 1, tzinfo=UTC)}).enqueue("x")
