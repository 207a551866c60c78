"""Every outcome of a batch is written, or written as a clear failure: one that cannot be
written as it is (a retry delay no time can hold, a backoff that raises, a value the database
refuses) never keeps the rest of its batch, or itself, RUNNING."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest

from kubetasks.backoff import as_backoff
from kubetasks.exceptions import Retry
from kubetasks.records import TaskRecord
from kubetasks.result import TaskResultStatus
from kubetasks.store import Outcome
from kubetasks.worker.attempt import Failed, Succeeded
from kubetasks.worker.metrics import WorkerMetrics
from kubetasks.worker.policy import FailTask, RetryAt, after_failure
from kubetasks.worker.reporter import Finished, Reporter

NOW = datetime(2026, 1, 1, tzinfo=UTC)
LATEST = datetime(9999, 12, 30, 23, 59, 59, 999999, tzinfo=UTC)


def decide(delay: Any = None, *, backoff: Any = None) -> Any:
    error = Retry(delay=delay) if delay is not None else ValueError("boom")
    return after_failure(error, attempt=1, max_attempts=3, backoff=as_backoff(backoff), now=NOW)


@pytest.mark.parametrize("delay", [float("inf"), float("nan"), "soon"])
def test_a_retry_delay_that_is_no_number_of_seconds_fails_the_task_saying_so(delay: Any) -> None:
    decision = decide(delay)
    assert isinstance(decision, FailTask)
    assert f"the retry delay {delay!r} from Retry(delay=...) is not a finite number" in decision.note


@pytest.mark.parametrize("delay", [1e12, 10 ** 400, float("1e308")], ids=["1e12", "int", "1e308"])
def test_a_retry_delay_past_the_latest_time_waits_until_then(delay: float) -> None:
    assert decide(delay) == RetryAt(LATEST, (LATEST - NOW).total_seconds())
    assert decide(backoff={1: 1e12}).run_after == LATEST


def test_negative_delays_retry_at_once() -> None:
    assert decide(-5) == RetryAt(NOW, 0.0) == decide(float("-inf"))


class FakeStore:
    """Records the writes; refuses, as PostgreSQL would, a return value it cannot store."""

    def __init__(self) -> None:
        self.completed: list[UUID] = []
        self.failed: dict[UUID, dict[str, Any]] = {}
        self.retried: dict[UUID, datetime] = {}
        self.learned: list[list[str]] = []

    def complete(self, outcomes: list[Outcome], *, learn: list[str] | None = None) -> set[UUID]:
        if any("refused" in o.return_json for o in outcomes):
            raise psycopg.errors.UntranslatableCharacter("unsupported Unicode escape sequence")
        self.completed += [o.claim_id for o in outcomes]
        self.learned.append(sorted(learn or []))
        return set()  # no claim was lost

    def fail(self, claim_id: UUID, error: str) -> bool:
        self.failed[claim_id] = json.loads(error)
        return True

    def retry(self, claim_id: UUID, run_after: datetime, error: str) -> bool:
        self.retried[claim_id] = run_after
        return True


class BrokenBackoff:
    def delay(self, attempt: int) -> float:
        raise ZeroDivisionError("the backoff's own bug")


def finished(result: Any, backoff: Any = None, task_name: str = "t") -> Finished:
    record = TaskRecord(
        id=1, queue_name="q", task_name=task_name, priority=0, args=[], kwargs={}, context={},
        state=TaskResultStatus.RUNNING, run_after=NOW, expected_at=None, enqueued_at=NOW,
        started_at=NOW, last_attempted_at=NOW, finished_at=None, attempts=1, max_attempts=3,
        lost_count=0, claim_id=uuid4(), worker_pod="p", worker_pod_uid="u", worker_nonce="n",
        heartbeat_at=NOW, worker_ids=[], return_value=None, errors=[])
    return Finished(record, result, backoff or as_backoff({1: 1}))


def test_one_unwritable_outcome_leaves_the_rest_of_its_batch_written() -> None:
    store = FakeStore()
    infinite = finished(Failed(Retry(delay=float("inf")), 0.1))
    far = finished(Failed(ValueError("far"), 0.1), as_backoff({1: 1e12}))
    broken = finished(Failed(ValueError("plain"), 0.1), BrokenBackoff())
    plain = finished(Failed(ValueError("plain"), 0.1))
    refused = finished(Succeeded('"refused"', 0.1))
    fine = finished(Succeeded('"fine"', 0.1))
    batch = [infinite, far, broken, refused, plain, fine]

    async def write_all() -> None:
        reporter = Reporter(store, WorkerMetrics(), worker_id="w",  # type: ignore[arg-type]
                            after_failures=lambda: None)
        reporter.start()
        for item in batch:
            reporter.add(item)
        await reporter.close()

    asyncio.run(write_all())

    def claim(item: Finished) -> UUID:
        assert item.record.claim_id is not None
        return item.record.claim_id

    assert store.completed == [claim(fine)]
    assert store.retried == {claim(far): LATEST, claim(plain): store.retried[claim(plain)]}
    assert set(store.failed) == {claim(infinite), claim(broken), claim(refused)}
    assert store.failed[claim(infinite)]["message"].startswith(
        "the retry delay inf from Retry(delay=...) is not a finite number of seconds")
    assert store.failed[claim(broken)]["message"] == (
        "the failure of attempt 1 could not be recorded: the backoff's own bug")
    assert store.failed[claim(refused)]["message"].startswith(
        "the success of attempt 1 could not be recorded: unsupported Unicode")


def test_a_task_names_durations_are_folded_at_most_once_a_second(
        monkeypatch: pytest.MonkeyPatch) -> None:
    store = FakeStore()
    clock = [100.0]
    monkeypatch.setattr("kubetasks.worker.reporter.time.monotonic", lambda: clock[0])
    reporter = Reporter(store, WorkerMetrics(), worker_id="w",  # type: ignore[arg-type]
                        after_failures=lambda: None)

    def batch(*names: str) -> None:
        reporter._write([finished(Succeeded("null", 0.1), task_name=name) for name in names])

    batch("a", "a", "b")  # the first successes of a name are folded at once
    clock[0] += 0.5
    batch("a", "c")       # "a" was folded 0.5 s ago; "c" never was
    clock[0] += 0.5
    batch("a", "b", "c")  # a second after "a" and "b", half of one after "c"
    assert store.learned == [["a", "b"], ["c"], ["a", "b"]]
    assert len(store.completed) == 8  # every success is recorded all the same
