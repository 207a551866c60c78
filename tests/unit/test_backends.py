"""The Immediate and Dummy backends, and how the default backend is chosen."""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import kubetasks
from kubetasks import (
    ConfigurationError,
    InvalidTaskError,
    TaskContext,
    TaskResultDoesNotExist,
    TaskResultStatus,
    collector,
    task,
)
from kubetasks.backends import DummyBackend, ImmediateBackend, PostgresBackend
from kubetasks.collector import PAUSE_AFTER
from kubetasks.config import Settings, make_backend


@task(queue_name="emails", max_attempts=3)
def greet(name: str, *, punctuation: str = "!") -> str:
    return f"hello {name}{punctuation}"


@task
def explode(reason: str) -> None:
    raise RuntimeError(reason)


@task
async def add_later(a: int, b: int) -> int:
    await asyncio.sleep(0)
    return a + b


@task(takes_context=True)
def who(context: TaskContext) -> object:
    return context.context["user"]


@task
def unserialisable() -> object:
    return object()


@pytest.fixture
def immediate() -> Iterator[ImmediateBackend]:
    backend = kubetasks.configure("immediate")
    assert isinstance(backend, ImmediateBackend)
    yield backend
    kubetasks.configure("dummy")


@pytest.fixture
def dummy() -> Iterator[DummyBackend]:
    backend = kubetasks.configure("dummy")
    assert isinstance(backend, DummyBackend)
    yield backend
    backend.clear()


def test_immediate_runs_the_task_at_enqueue(immediate: ImmediateBackend) -> None:
    result = greet.enqueue("ada", punctuation="?")
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == "hello ada?"
    assert result.attempts == 1 and result.finished_at is not None
    assert kubetasks.get_result(result.id).return_value == "hello ada?"


def test_immediate_records_failures_instead_of_raising(immediate: ImmediateBackend) -> None:
    result = explode.enqueue("boom")
    assert result.status == TaskResultStatus.FAILED
    assert result.errors[0].exception_class_path == "builtins.RuntimeError"
    assert "boom" in result.errors[0].traceback
    with pytest.raises(ValueError, match="ended FAILED"):
        _ = result.return_value


def test_immediate_runs_async_tasks_and_passes_context(immediate: ImmediateBackend) -> None:
    assert add_later.enqueue(2, 3).return_value == 5
    assert asyncio.run(add_later.aenqueue(4, 5)).return_value == 9
    assert who.using(context={"user": "u7"}).enqueue().return_value == "u7"


def test_immediate_fails_a_task_whose_return_value_cannot_be_stored(
        immediate: ImmediateBackend) -> None:
    result = unserialisable.enqueue()
    assert result.status == TaskResultStatus.FAILED
    assert "return value of task" in result.errors[0].message


def test_dummy_records_and_never_runs(dummy: DummyBackend) -> None:
    first = explode.enqueue("never raised")
    greet.enqueue_many([("a",), ("b",)])
    assert [r.status for r in dummy.results] == [TaskResultStatus.READY] * 3
    assert [r.args for r in dummy.results] == [["never raised"], ["a"], ["b"]]
    first.refresh()
    assert first.status == TaskResultStatus.READY
    dummy.clear()
    assert dummy.results == []
    with pytest.raises(TaskResultDoesNotExist):
        kubetasks.get_result(first.id)


def test_dummy_validates_like_the_real_backend(dummy: DummyBackend) -> None:
    with pytest.raises(InvalidTaskError, match="priority 500"):
        greet.using(priority=500).enqueue("x")
    assert dummy.results == []


def test_memory_backends_refuse_a_transaction_connection(dummy: DummyBackend) -> None:
    with pytest.raises(ConfigurationError, match="cannot enqueue on a database connection"):
        greet.using(connection=object()).enqueue("x")  # type: ignore[arg-type]


def test_default_backend_from_the_environment(caplog: pytest.LogCaptureFixture) -> None:
    assert Settings.from_env({}).backend == "immediate"
    assert Settings.from_env({"PGHOST": "db"}).backend == "postgres"
    assert Settings.from_env({"KUBETASKS_DATABASE_URL": "postgresql://x/y"}).backend == "postgres"
    assert Settings.from_env({"KUBETASKS_QUEUES": "a, b,"}).queues == frozenset({"a", "b"})
    with pytest.raises(ConfigurationError, match="KUBETASKS_BACKEND='redis' is not a backend"):
        Settings.from_env({"KUBETASKS_BACKEND": "redis"})
    with caplog.at_level(logging.WARNING, logger="kubetasks"):
        assert isinstance(make_backend(Settings(backend="immediate")), ImmediateBackend)
    assert [r.message for r in caplog.records if "immediate" in r.message] == [
        "kubetasks: no database configured (KUBETASKS_DATABASE_URL or PG* unset); "
        "tasks run inline with the immediate backend"]
    assert isinstance(make_backend(Settings(backend="postgres", database_url="postgresql://x/y")),
                      PostgresBackend)


def test_task_definition_is_checked() -> None:
    with pytest.raises(InvalidTaskError, match="priority 200 is invalid"):
        task(priority=200)(lambda: None)
    with pytest.raises(InvalidTaskError, match="max_attempts 0 is invalid"):
        task(max_attempts=0)(lambda: None)
    with pytest.raises(InvalidTaskError, match="task name 'tests.unit.test_backends.greet' is "
                                               "already used"):
        task(name="tests.unit.test_backends.greet")(lambda: None)


def test_using_returns_a_modified_copy() -> None:
    urgent = greet.using(priority=50, queue_name="urgent")
    assert (urgent.priority, urgent.queue_name) == (50, "urgent")
    assert (greet.priority, greet.queue_name) == (0, "emails")


def test_immediate_refuses_to_defer_naming_the_value(immediate: ImmediateBackend) -> None:
    with pytest.raises(InvalidTaskError, match=r"run_after 60s \(a delay\) cannot be honoured: "
                                               "the immediate backend does not defer tasks"):
        greet.using(run_after=timedelta(minutes=1)).enqueue("x")
    later = datetime(2030, 1, 1, tzinfo=UTC)
    with pytest.raises(InvalidTaskError, match="run_after 2030-01-01T00:00:00[+]00:00 cannot"):
        greet.using(run_after=later).enqueue("x")
    assert immediate.results == []


def test_dummy_records_a_deferred_task_as_the_database_would(dummy: DummyBackend) -> None:
    result = greet.using(run_after=timedelta(minutes=1)).enqueue("x")
    assert result.status == TaskResultStatus.READY
    assert result.run_after is not None and result.enqueued_at is not None
    assert result.run_after - result.enqueued_at >= timedelta(seconds=59)



class GcWatchingBackend(DummyBackend):
    """Notes whether the cycle collector was on when the batch reached the backend."""

    def __init__(self) -> None:
        super().__init__()
        self.collector_on: list[bool] = []

    def enqueue_many(self, task: Any, requests: Any, **kwargs: Any) -> Any:
        self.collector_on.append(gc.isenabled())
        return super().enqueue_many(task, requests, **kwargs)


def test_a_large_batch_gives_the_collector_back_before_the_backend_runs_anything() -> None:
    """The immediate backend runs task code: never with the collector held off."""
    backend = GcWatchingBackend()
    greet.using(backend=backend).enqueue_many([("a",)] * PAUSE_AFTER)
    assert backend.collector_on == [True]
    assert len(backend.results) == PAUSE_AFTER


@pytest.mark.parametrize("count", [PAUSE_AFTER - 1, PAUSE_AFTER])
def test_a_pause_holds_off_the_collector_for_large_counts_only(count: int) -> None:
    with collector.paused(count):
        assert gc.isenabled() == (count < PAUSE_AFTER)
    assert gc.isenabled()


def test_the_collector_is_given_back_when_a_large_batch_is_refused() -> None:
    with pytest.raises(InvalidTaskError, match="missing a required argument"):
        greet.using(backend=DummyBackend()).enqueue_many([("a",)] * PAUSE_AFTER + [()])
    assert gc.isenabled()


def test_overlapping_pauses_in_threads_give_the_collector_back_once_the_last_ends() -> None:
    first_in, second_out = threading.Event(), threading.Event()
    seen: list[bool] = []

    def first() -> None:
        with collector.paused(PAUSE_AFTER):
            first_in.set()
            second_out.wait(5)
            seen.append(gc.isenabled())  # the second pause ended; this one has not

    thread = threading.Thread(target=first)
    thread.start()
    first_in.wait(5)
    with collector.paused(PAUSE_AFTER):
        pass
    second_out.set()
    thread.join(5)
    assert seen == [False]
    assert gc.isenabled()


def test_a_collector_the_application_turned_off_stays_off() -> None:
    gc.disable()
    try:
        with collector.paused(PAUSE_AFTER):
            pass
        greet.using(backend=DummyBackend()).enqueue_many([("a",)] * PAUSE_AFTER)
        assert not gc.isenabled()
    finally:
        gc.enable()
