"""What the client accepts, every reader can read: values PostgreSQL or a worker could not
take back are refused at enqueue with ``InvalidTaskError`` naming them, and nothing is written."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from kubetasks import InvalidTaskError, task
from kubetasks.backends import DummyBackend
from kubetasks.request import request_template

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
EARLIEST = datetime(1, 1, 2, tzinfo=UTC)
LATEST = datetime(9999, 12, 30, 23, 59, 59, 999999, tzinfo=UTC)
MAX_QUEUE_NAME = 100  # the TaskQueue CRD's queueName
PLUS_14 = timezone(timedelta(hours=14))
MINUS_14 = timezone(timedelta(hours=-14))


def takes_anything(*args: Any, **kwargs: Any) -> None:
    return None


def build(*args: Any, **options: Any) -> Any:
    values: dict[str, Any] = {
        "task_name": "app.any", "func": takes_anything, "takes_context": False, "args": args,
        "kwargs": options.pop("kwargs", {}), "queue_name": "default", "priority": 0,
        "max_attempts": 1, "run_after": None, "expected_at": None, "context": {},
        "allowed_queues": None, "now": NOW,
    }
    values.update(options)
    call_args, call_kwargs = values.pop("args"), values.pop("kwargs")
    unique_key = values.pop("unique_key", None)
    return request_template(**values).request(call_args, call_kwargs, unique_key)


def nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(("args", "kwargs", "message"), [
    pytest.param((nested(10_000),), {}, r"args\[0\]\[0\].* is nested more than 100", id="deep"),
    pytest.param(({"a": nested(200)},), {}, r"nested more than 100", id="deep-in-dict"),
    pytest.param(("a\x00b",), {}, r"args\[0\] 'a\\x00b' contains the NUL character", id="nul"),
    pytest.param((), {"k": {"x\x00": 1}}, r"kwargs\['k'\] key 'x\\x00' contains the NUL",
                 id="nul-key"),
    pytest.param(("\ud83d",), {}, r"args\[0\] .* lone surrogate '\\ud83d'", id="surrogate"),
    pytest.param((10 ** 4300,), {}, r"args\[0\] is an int of more than 4300 digits",
                 id="huge-int"),
    pytest.param((-(10 ** 5000),), {}, r"more than 4300 digits", id="huge-negative-int"),
    pytest.param((x for x in [1]), {}, r"args\[0\] is <generator", id="generator-argument"),
])
def test_values_no_reader_could_take_back_are_refused(args: Any, kwargs: Any, message: str,
                                                       ) -> None:
    if not isinstance(args, tuple):
        args = (args,)
    with pytest.raises(InvalidTaskError, match=message):
        build(*args, kwargs=kwargs)


def test_values_at_the_limits_are_accepted() -> None:
    request = build(nested(98), 10 ** 4299, "\N{SNOWMAN}\U0001f600", kwargs={"k": "\t"})
    assert request.args[1] == 10 ** 4299


@pytest.mark.parametrize(("options", "message"), [
    pytest.param({"run_after": datetime(1, 1, 1, tzinfo=PLUS_14)},
                 r"run_after 0001-01-01T00:00:00\+14:00 is out of range: use a time from "
                 r"0001-01-02T00:00:00\+00:00 to 9999-12-30T23:59:59.999999\+00:00", id="year-1"),
    pytest.param({"expected_at": datetime(9999, 12, 31, 23, 0, tzinfo=MINUS_14)},
                 r"expected_at 9999-12-31T23:00:00-14:00 is out of range", id="year-10000"),
    pytest.param({"run_after": datetime.max.replace(tzinfo=UTC)}, r"run_after .* out of range",
                 id="datetime.max"),
    pytest.param({"run_after": timedelta.max}, r"run_after .* is a delay past 9999-12-30",
                 id="timedelta.max"),
    pytest.param({"expected_at": timedelta(days=3_000_000)}, r"expected_at .* is a delay past",
                 id="timedelta-overflow"),
    pytest.param({"queue_name": "q" * (MAX_QUEUE_NAME + 1)},
                 r"queue_name 'q{100}'\.\.\. is 101 characters long; use at most 100",
                 id="long-queue"),
    pytest.param({"queue_name": "a\x00"}, r"queue_name 'a\\x00' contains the NUL", id="nul-queue"),
    pytest.param({"queue_name": "\udc80"}, r"queue_name .* lone surrogate", id="surrogate-queue"),
    pytest.param({"max_attempts": 2 ** 31}, r"max_attempts 2147483648 is invalid: use an int "
                 r"from 1 to 2147483647", id="max-attempts"),
    pytest.param({"context": {"k": "\x00"}}, r"context\['k'\] .* NUL", id="nul-context"),
])
def test_options_no_reader_could_take_back_are_refused(options: dict[str, Any],
                                                       message: str) -> None:
    with pytest.raises(InvalidTaskError, match=message):
        build(**options)


def test_times_are_accepted_within_the_bounds_in_any_offset_and_stored_in_utc() -> None:
    request = build(run_after=EARLIEST.astimezone(MINUS_14),
                    expected_at=LATEST.astimezone(PLUS_14))
    assert request.run_after == EARLIEST and request.run_after.tzinfo is UTC
    assert request.expected_at == LATEST and request.expected_at.tzinfo is UTC
    # Every reader, in any time zone a datetime can carry, can hold them.
    for hours in (-23, 23):
        zone = timezone(timedelta(hours=hours, minutes=59 if hours > 0 else -59))
        assert EARLIEST.astimezone(zone).year >= 1 and LATEST.astimezone(zone).year <= 9999


@pytest.fixture
def dummy() -> Iterator[DummyBackend]:
    yield DummyBackend()


def test_task_names_are_checked_like_queue_names() -> None:
    with pytest.raises(InvalidTaskError, match=r"task name 'app\.\\x00' contains the NUL"):
        task(name="app.\x00")(takes_anything)
    with pytest.raises(InvalidTaskError, match=r"task name 'x{500}'\.\.\. is 501 characters"):
        task(name="x" * 501)(takes_anything)
    with pytest.raises(InvalidTaskError, match=r"timeout inf of task .* finite number"):
        task(name="app.forever", timeout=float("inf"))(takes_anything)


def test_enqueue_batched_takes_any_iterable_and_refuses_a_zero_batch(dummy: DummyBackend) -> None:
    defined = task(name="app.batched")(takes_anything).using(backend=dummy)
    results = defined.enqueue_batched((i for i in range(5)), "extra", batch_size=2)
    assert [r.args for r in results] == [[[0, 1], "extra"], [[2, 3], "extra"], [[4], "extra"]]
    assert [r.args for r in defined.enqueue_batched(range(3), batch_size=3)] == [[[0, 1, 2]]]
    assert defined.enqueue_batched(iter(()), batch_size=3) == []
    for size in (0, -1, True, 1.5):
        with pytest.raises(InvalidTaskError, match=rf"batch_size {size!r} is invalid"):
            defined.enqueue_batched([1, 2], batch_size=size)  # type: ignore[arg-type]
    with pytest.raises(InvalidTaskError, match=r"items 5 of enqueue_batched are not iterable"):
        defined.enqueue_batched(5, batch_size=2)  # type: ignore[arg-type]
    assert len(dummy.results) == 4  # the refused calls wrote nothing
