"""One attempt of a claimed task, without a database: matching, binding, running, encoding."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import pytest

from kubetasks import TaskContext, task
from kubetasks.exceptions import InvalidTaskError, TaskTimeout, UnknownTaskError
from kubetasks.records import TaskRecord
from kubetasks.result import TaskResultStatus
from kubetasks.worker import attempt
from kubetasks.worker.attempt import Failed, Succeeded, TaskScope, prepare, run_async, run_sync
from kubetasks.worker.metrics import task_label
from kubetasks.worker.threads import TaskThreads

NOW = datetime(2026, 1, 1, tzinfo=UTC)


@task(name="unit.add")
def add(a: int, b: int = 0) -> int:
    return a + b


@task(name="unit.greet", takes_context=True)
def greet(context: TaskContext, name: str) -> str:
    return f"hello {name}, attempt {context.attempt}"


@task(name="unit.returns")
def returns(value: Any) -> Any:
    return value


@task(name="unit.exits")
def exits() -> None:
    raise SystemExit(3)


@task(name="unit.sleepy", timeout=0.05)
async def sleepy(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "awake"


@task(name="unit.raises_timeout_error")
async def raises_timeout_error() -> None:
    raise TimeoutError("the remote service timed out")


def record(task_name: str, args: Any = (), kwargs: Any = None, attempts: int = 1) -> TaskRecord:
    return TaskRecord(
        id=7, queue_name="default", task_name=task_name, priority=0,
        args=list(args) if isinstance(args, tuple) else args, kwargs=kwargs or {}, context={},
        state=TaskResultStatus.RUNNING, run_after=NOW, expected_at=None, enqueued_at=NOW,
        started_at=NOW, last_attempted_at=NOW, finished_at=None, attempts=attempts,
        max_attempts=3, lost_count=0, claim_id=uuid4(), worker_pod="p", worker_pod_uid="u",
        worker_nonce="n", heartbeat_at=NOW, worker_ids=[], return_value=None, errors=[])


def test_prepare_binds_stored_arguments() -> None:
    call = prepare(record("unit.add", (1,), {"b": 2}))
    assert call.task is add and (call.args, call.kwargs) == ([1], {"b": 2})
    assert run_sync(call) == Succeeded("3", pytest.approx(0, abs=0.1))


def test_prepare_passes_the_context_first() -> None:
    result = run_sync(prepare(record("unit.greet", ("ada",), attempts=2)))
    assert isinstance(result, Succeeded) and result.return_json == '"hello ada, attempt 2"'


def test_prepare_refuses_unregistered_names_without_importing_them() -> None:
    with pytest.raises(UnknownTaskError, match="'os.system' is not registered in this process"):
        prepare(record("os.system", ("true",)))


@pytest.mark.parametrize(("args", "kwargs", "message"), [
    ((1, 2, 3), None, r"do not fit unit.add\(a, b=0\): too many positional arguments"),
    ((), {"c": 1}, "missing a required argument: 'a'"),
    ({"a": 1}, None, "args must be a JSON list and kwargs a JSON object"),
])
def test_prepare_refuses_arguments_that_do_not_fit(args: Any, kwargs: Any, message: str) -> None:
    with pytest.raises(InvalidTaskError, match=message):
        prepare(record("unit.add", args, kwargs))


@pytest.mark.parametrize(("value", "error", "message"), [
    (object(), TypeError, "not JSON-serialisable"),
    (float("nan"), TypeError, "which JSON cannot represent"),
    ({1: "x"}, TypeError, "JSON object keys must be str"),
    (["a\x00"], TypeError, "NUL character"),
    ({"k\x00": 1}, TypeError, "NUL character"),
    (["\ud800"], TypeError, "lone surrogate"),
    pytest.param(10 ** 5000, TypeError, "more than 4300 digits", id="huge-int"),
])
def test_a_return_value_that_cannot_be_stored_fails_the_attempt(
        value: Any, error: type[Exception], message: str) -> None:
    result = run_sync(prepare(record("unit.returns", (value,))))
    assert isinstance(result, Failed) and isinstance(result.error, error)
    assert message in str(result.error)


def test_an_escaped_backslash_before_u0000_is_not_a_nul() -> None:
    call = prepare(record("unit.returns", ("\\u0000",)))
    assert run_sync(call) == Succeeded('"\\\\u0000"', pytest.approx(0, abs=0.1))


def test_system_exit_from_a_task_is_a_failure_not_the_end_of_the_thread() -> None:
    result = run_sync(prepare(record("unit.exits")))
    assert isinstance(result, Failed) and isinstance(result.error, SystemExit)


def test_async_task_within_and_past_its_timeout() -> None:
    fast = asyncio.run(run_async(prepare(record("unit.sleepy", (0,)))))
    assert isinstance(fast, Succeeded) and fast.return_json == '"awake"'
    slow = asyncio.run(run_async(prepare(record("unit.sleepy", (5,)))))
    assert isinstance(slow, Failed) and isinstance(slow.error, TaskTimeout)
    assert "ran longer than its timeout of 0.05 s" in str(slow.error)
    assert slow.seconds < 1


def test_a_timeout_error_raised_by_the_task_itself_is_kept() -> None:
    result = asyncio.run(run_async(prepare(record("unit.raises_timeout_error"))))
    assert isinstance(result, Failed) and type(result.error) is TimeoutError


def test_metric_labels_never_carry_unregistered_names() -> None:
    assert task_label("unit.add") == "unit.add"
    assert task_label("anything.from.the.database") == "unregistered"


def test_task_threads_deliver_every_result_on_the_loop() -> None:
    async def scenario() -> list[int]:
        loop = asyncio.get_running_loop()
        delivered: list[int] = []
        done = asyncio.Event()
        on_loop = []

        def deliver(batch: list[int]) -> None:
            on_loop.append(threading.current_thread() is threading.main_thread())
            delivered.extend(batch)
            if len(delivered) == 500:
                done.set()

        threads = TaskThreads(4, loop, deliver)
        for n in range(500):
            threads.submit(lambda n=n: n)
        await asyncio.wait_for(done.wait(), 10)
        assert all(on_loop) and len(on_loop) <= 500
        return delivered

    assert sorted(asyncio.run(scenario())) == list(range(500))


@pytest.fixture
def scope_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """A task scope that records its calls, and where they ran, for this test only."""
    calls: list[str] = []

    async def abefore() -> None:
        calls.append("abefore")

    async def aafter() -> None:
        calls.append("aafter")

    def before() -> None:
        calls.append(f"before on {threading.current_thread().name}")

    def after() -> None:
        calls.append(f"after on {threading.current_thread().name}")

    monkeypatch.setattr(attempt, "_scopes", [])
    scope = TaskScope(before=before, after=after, abefore=abefore, aafter=aafter)
    attempt.add_task_scope(scope)
    attempt.add_task_scope(scope)  # once per scope
    return calls


def test_a_task_scope_wraps_each_task_where_it_runs_even_one_that_fails(
        scope_calls: list[str]) -> None:
    ran: list[Any] = []
    thread = threading.Thread(name="task-thread", target=lambda: ran.extend([
        run_sync(prepare(record("unit.add", (1, 2)))), run_sync(prepare(record("unit.exits")))]))
    thread.start()
    thread.join()
    assert isinstance(ran[0], Succeeded) and ran[0].return_json == "3"
    assert isinstance(ran[1], Failed) and isinstance(ran[1].error, SystemExit)
    assert scope_calls == ["before on task-thread", "after on task-thread"] * 2

    scope_calls.clear()
    done = asyncio.run(run_async(prepare(record("unit.sleepy", (0.0,)))))
    assert isinstance(done, Succeeded) and scope_calls == ["abefore", "aafter"]


def test_an_error_in_a_task_scope_fails_the_attempt_not_the_worker(scope_calls: list[str]) -> None:
    def broken() -> None:
        raise RuntimeError("cannot close the ORM connection")

    async def abroken() -> None:
        broken()

    attempt.add_task_scope(TaskScope(before=broken, after=lambda: None,
                                     abefore=abroken, aafter=abroken))
    result = run_sync(prepare(record("unit.add", (1, 2))))
    assert isinstance(result, Failed) and "cannot close the ORM connection" in str(result.error)
    done = asyncio.run(run_async(prepare(record("unit.sleepy", (0.0,)))))
    assert isinstance(done, Failed) and "cannot close the ORM connection" in str(done.error)
