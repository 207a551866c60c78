"""The worker's pure decisions: retry or fail, how long to sleep, how long a task waited."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

from kubetasks.backoff import ExponentialBackoff, PatternBackoff
from kubetasks.exceptions import (
    FailNow,
    InvalidTaskError,
    Retry,
    TaskTimeout,
    UnknownTaskError,
)
from kubetasks.records import TaskRecord
from kubetasks.result import TaskResultStatus
from kubetasks.worker.policy import (
    MIN_IDLE_WAIT,
    FailTask,
    PutBack,
    RetryAt,
    after_failure,
    idle_wait,
    queue_wait,
    reconnect_delay,
)

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
PATTERN = PatternBackoff.from_mapping({1: 10, 3: 60})


@pytest.mark.parametrize(("attempt", "delay"), [(1, 10), (2, 10), (3, 60), (4, 60)])
def test_a_failed_attempt_with_attempts_left_retries_after_the_backoff(attempt: int,
                                                                      delay: float) -> None:
    decision = after_failure(ValueError("boom"), attempt=attempt, max_attempts=5,
                             backoff=PATTERN, now=NOW)
    assert decision == RetryAt(run_after=NOW + timedelta(seconds=delay), delay=delay)


def test_the_last_attempt_fails() -> None:
    decision = after_failure(ValueError("boom"), attempt=3, max_attempts=3, backoff=PATTERN,
                             now=NOW)
    assert decision == FailTask("attempt 3 of 3 failed; no attempt is left")


def test_exponential_backoff_without_jitter_doubles() -> None:
    backoff = ExponentialBackoff(base=2, jitter=False)
    delays = [after_failure(OSError(), attempt=a, max_attempts=9, backoff=backoff, now=NOW)
              for a in (1, 2, 3)]
    assert [d.delay for d in delays if isinstance(d, RetryAt)] == [2, 4, 8]


def test_retry_exception_overrides_the_backoff_but_counts_an_attempt() -> None:
    assert after_failure(Retry(delay=5), attempt=1, max_attempts=2, backoff=PATTERN,
                         now=NOW) == RetryAt(NOW + timedelta(seconds=5), 5.0)
    assert after_failure(Retry(), attempt=1, max_attempts=2, backoff=PATTERN,
                         now=NOW) == RetryAt(NOW + timedelta(seconds=10), 10.0)
    assert isinstance(after_failure(Retry(delay=5), attempt=2, max_attempts=2, backoff=PATTERN,
                                    now=NOW), FailTask)


def test_a_negative_requested_delay_means_now() -> None:
    assert after_failure(Retry(delay=-3), attempt=1, max_attempts=2, backoff=PATTERN,
                         now=NOW) == RetryAt(NOW, 0.0)


@pytest.mark.parametrize("error", [FailNow("no"), UnknownTaskError("who?"),
                                   InvalidTaskError("bad args")])
def test_errors_another_attempt_cannot_mend_fail_at_once(error: Exception) -> None:
    decision = after_failure(error, attempt=1, max_attempts=10, backoff=PATTERN, now=NOW)
    assert isinstance(decision, FailTask)
    assert type(error).__name__ in decision.reason


def test_an_unknown_task_is_put_back_while_young_then_failed() -> None:
    young = after_failure(UnknownTaskError("who?"), attempt=1, max_attempts=1, backoff=PATTERN,
                          now=NOW, enqueued_at=NOW - timedelta(minutes=9))
    assert young == PutBack(NOW + timedelta(seconds=15))
    old = after_failure(UnknownTaskError("who?"), attempt=1, max_attempts=1, backoff=PATTERN,
                        now=NOW, enqueued_at=NOW - timedelta(minutes=10))
    assert isinstance(old, FailTask)


def test_a_timeout_is_retried_like_any_failure() -> None:
    assert isinstance(after_failure(TaskTimeout("slow"), attempt=1, max_attempts=2,
                                    backoff=PATTERN, now=NOW), RetryAt)


def test_idle_wait_sleeps_until_the_next_scheduled_task_within_the_poll_interval() -> None:
    assert idle_wait(now=NOW, next_run_after=None, poll_interval=5) == 5
    assert idle_wait(now=NOW, next_run_after=NOW + timedelta(seconds=2), poll_interval=5) == 2
    assert idle_wait(now=NOW, next_run_after=NOW + timedelta(hours=1), poll_interval=5) == 5
    # Due already but not claimable (locked by someone): do not spin.
    assert idle_wait(now=NOW, next_run_after=NOW - timedelta(seconds=1),
                     poll_interval=5) == MIN_IDLE_WAIT


def record(**changes: object) -> TaskRecord:
    base = TaskRecord(
        id=1, queue_name="q", task_name="t", priority=0, args=[], kwargs={}, context={},
        state=TaskResultStatus.RUNNING, run_after=NOW, expected_at=None, enqueued_at=NOW,
        started_at=NOW, last_attempted_at=NOW, finished_at=None, attempts=1, max_attempts=1,
        lost_count=0, claim_id=uuid4(), worker_pod="p", worker_pod_uid="u", worker_nonce="n",
        heartbeat_at=NOW, worker_ids=[], return_value=None, errors=[])
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_queue_wait_counts_from_when_the_task_could_first_run() -> None:
    claimed = NOW + timedelta(seconds=30)
    assert queue_wait(record(last_attempted_at=claimed)) == 30
    scheduled = record(run_after=NOW + timedelta(seconds=20), last_attempted_at=claimed)
    assert queue_wait(scheduled) == 10
    assert queue_wait(record(last_attempted_at=None)) == 0


def test_reconnect_delay_backs_off_up_to_five_seconds() -> None:
    delays = [reconnect_delay(n) for n in range(1, 10)]
    assert delays[0] == 0.1 and delays == sorted(delays) and delays[-1] == 5.0
