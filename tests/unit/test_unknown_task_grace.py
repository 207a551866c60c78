"""The grace before a stored task naming no imported task fails: configurable, 10 minutes by
default (for rolling deploys), 0 to fail it at once as Django's own workers do."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from kubetasks.backoff import PatternBackoff
from kubetasks.exceptions import ConfigurationError, UnknownTaskError
from kubetasks.worker.policy import UNKNOWN_TASK_GRACE, FailTask, PutBack, after_failure
from kubetasks.worker.settings import WorkerSettings
from tests.unit.test_worker_settings import settings

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
BACKOFF = PatternBackoff.from_mapping({1: 10})


def decide(grace: timedelta, age: timedelta) -> object:
    return after_failure(UnknownTaskError("who?"), attempt=1, max_attempts=3, backoff=BACKOFF,
                         now=NOW, enqueued_at=NOW - age, unknown_task_grace=grace)


def test_zero_grace_fails_an_unknown_task_at_once() -> None:
    assert isinstance(decide(timedelta(0), timedelta(0)), FailTask)


def test_a_longer_grace_keeps_putting_it_back() -> None:
    assert decide(timedelta(hours=1), timedelta(minutes=30)) == PutBack(NOW + timedelta(seconds=15))
    assert isinstance(decide(timedelta(hours=1), timedelta(hours=1)), FailTask)


def test_the_default_is_ten_minutes_in_settings_and_policy() -> None:
    assert settings("--import", "m").unknown_task_grace == UNKNOWN_TASK_GRACE
    assert WorkerSettings.unknown_task_grace == UNKNOWN_TASK_GRACE == timedelta(minutes=10)


def test_flag_and_variable() -> None:
    assert settings("--import", "m", "--unknown-task-grace", "0").unknown_task_grace == timedelta(0)
    from_env = settings("--import", "m", env={"KUBETASKS_WORKER_UNKNOWN_TASK_GRACE": "1h30m"})
    assert from_env.unknown_task_grace == timedelta(hours=1, minutes=30)


@pytest.mark.parametrize(("text", "said"), [("-5m", "use a duration >= 0"),
                                            ("soon", "duration 'soon' is invalid")])
def test_bad_grace_names_the_flag(text: str, said: str) -> None:
    with pytest.raises(ConfigurationError, match=f"--unknown-task-grace='{text}' is invalid: "
                                                 f".*{said}"):
        settings("--import", "m", "--unknown-task-grace", text)
