"""The worker's configuration: flags over environment over defaults, and clear refusals."""

from __future__ import annotations

from typing import Any

import click
import pytest

from kubetasks.exceptions import ConfigurationError
from kubetasks.worker.health import HealthState
from kubetasks.worker.settings import WorkerSettings, worker_options


def settings(*argv: str, env: dict[str, str] | None = None) -> WorkerSettings:
    """The settings ``kubetasks worker ARGV`` would run with, parsed by the real options."""
    given: dict[str, Any] = {}

    @click.command()
    @worker_options
    def worker(**options: Any) -> None:
        given.update(options)

    worker.main(list(argv), standalone_mode=False)
    return WorkerSettings.from_options(given, env or {}, database_url="db")


def test_defaults() -> None:
    s = settings("--import", "app.tasks")
    assert s == WorkerSettings(database_url="db", imports=("app.tasks",), queues=(),
                               concurrency=8, listen=True, poll_interval=5.0,
                               heartbeat_interval=10.0, grace_period=25.0, max_lost=3,
                               health_host="0.0.0.0", health_port=8000, requeue_on_start=False)


def test_flags() -> None:
    s = settings("--import", "a", "--import", "b", "--queue", "emails", "--queue", "reports",
                 "--concurrency", "16", "--no-listen", "--poll-interval", "0.5",
                 "--heartbeat-interval", "3", "--grace-period", "0", "--max-lost", "5",
                 "--health-host", "127.0.0.1", "--health-port", "0")
    assert (s.imports, s.queues) == (("a", "b"), ("emails", "reports"))
    assert (s.concurrency, s.listen, s.poll_interval) == (16, False, 0.5)
    assert (s.heartbeat_interval, s.grace_period, s.max_lost) == (3.0, 0.0, 5)
    assert (s.health_host, s.health_port) == ("127.0.0.1", 0)


def test_environment_fills_in_and_flags_win() -> None:
    env = {"KUBETASKS_WORKER_IMPORTS": "app.tasks, app.more", "KUBETASKS_WORKER_QUEUES": "a,b",
           "KUBETASKS_WORKER_CONCURRENCY": "3", "KUBETASKS_WORKER_LISTEN": "false",
           "KUBETASKS_HEALTH_PORT": "9000", "KUBETASKS_HEALTH_HOST": "::",
           "POD_UID": "4f1c-uid"}
    s = settings(env=env)
    assert s.imports == ("app.tasks", "app.more") and s.queues == ("a", "b")
    assert (s.concurrency, s.listen, s.health_port, s.health_host) == (3, False, 9000, "::")
    assert s.requeue_on_start  # in a pod: put back what an earlier container held
    assert settings("--concurrency", "7", "--listen", env=env).concurrency == 7
    assert settings("--listen", env=env).listen is True


def test_polling_alone_polls_more_often_by_default() -> None:
    assert settings("--import", "a", "--no-listen").poll_interval == 1.0
    assert settings("--import", "a").poll_interval == 5.0


@pytest.mark.parametrize(("argv", "env", "message"), [
    ((), {}, "no task modules to import: give --import MODULE"),
    (("--import", "a", "--concurrency", "0"), {}, "--concurrency='0' is invalid: use a whole"),
    (("--import", "a"), {"KUBETASKS_WORKER_CONCURRENCY": "many"},
     "KUBETASKS_WORKER_CONCURRENCY='many' is invalid"),
    (("--import", "a", "--poll-interval", "-1"), {}, "use a number of seconds >= 0"),
    (("--import", "a", "--grace-period", "soon"), {}, "use a number of seconds >= 0"),
    (("--import", "a", "--health-port", "70000"), {}, "use a port from 1 to 65535, or 0"),
    (("--import", "a"), {"KUBETASKS_WORKER_LISTEN": "maybe"}, "use true or false"),
])
def test_bad_values_name_the_flag_or_variable(argv: tuple[str, ...], env: dict[str, str],
                                              message: str) -> None:
    with pytest.raises(ConfigurationError, match=message.replace("(", r"\(")):
        settings(*argv, env=env)


def test_without_queues_a_worker_serves_every_queue_but_the_excluded() -> None:
    every = settings("--import", "app")
    assert every.queues == () and every.serves("emails") and every.serves("made-up")
    assert every.serving == "all queues"
    but = settings("--import", "app", "--exclude-queue", "slow", "--exclude-queue", "media")
    assert not but.serves("slow") and not but.serves("media") and but.serves("emails")
    assert but.serving == "all queues but slow, media"
    given = settings("--import", "app", "--queue", "x")
    assert given.serves("x") and not given.serves("emails")
    from_env = settings("--import", "app", env={"KUBETASKS_WORKER_EXCLUDE_QUEUES": "a, b"})
    assert from_env.exclude_queues == ("a", "b")
    with pytest.raises(ConfigurationError, match="queue 'x' is both served"):
        settings("--import", "app", "--queue", "x", "--exclude-queue", "x")


def test_max_tasks_exit_when_idle_and_a_zero_poll_interval() -> None:
    s = settings("--import", "a", "--max-tasks", "5", "--exit-when-idle", "--poll-interval", "0")
    assert (s.max_tasks, s.exit_when_idle, s.poll_interval) == (5, True, 0.0)
    assert (settings("--import", "a").max_tasks, settings("--import", "a").exit_when_idle) == (
        None, False)
    env = {"KUBETASKS_WORKER_MAX_TASKS": "2", "KUBETASKS_WORKER_EXIT_WHEN_IDLE": "true"}
    assert (settings("--import", "a", env=env).max_tasks,
            settings("--import", "a", env=env).exit_when_idle) == (2, True)
    for bad in ("0", "-1", "many"):
        with pytest.raises(ConfigurationError, match=f"--max-tasks='{bad}' is invalid: use a "
                                                     "whole number >= 1"):
            settings("--import", "a", "--max-tasks", bad)


def test_liveness_allows_a_few_poll_intervals_and_at_least_a_minute() -> None:
    assert settings("--import", "a").liveness_timeout == 60
    assert settings("--import", "a", "--poll-interval", "30").liveness_timeout == 90


def test_health_state() -> None:
    health = HealthState(liveness_timeout=60, last_loop_at=1000.0)
    assert health.alive(1059.0) == (True, "ok")
    assert health.alive(1061.0)[0] is False
    assert health.ready() == (False, "database unreachable")
    health.database_ok = True
    assert health.ready() == (True, "ok")
    health.draining = True
    assert health.ready() == (False, "draining: stopping after SIGTERM")


def test_max_lost_zero_means_fail_on_the_first_loss() -> None:
    assert settings("--import", "a", "--max-lost", "0").max_lost == 0
    with pytest.raises(ConfigurationError, match="--max-lost"):
        settings("--import", "a", "--max-lost", "-1")


@pytest.mark.parametrize("value", ["1001", "100000000000000000000", "-3"])
def test_concurrency_has_a_sane_upper_bound(value: str) -> None:
    assert settings("--import", "a", "--concurrency", "1000").concurrency == 1000
    with pytest.raises(ConfigurationError, match=rf"--concurrency='{value}' is invalid: use a "
                       r"whole number from 1 to 1000 \(for more, run more workers\)"):
        settings("--import", "a", "--concurrency", value)


def test_intervals_read_durations_as_people_write_them() -> None:
    s = settings("--import", "a", "--grace-period", "1m30s", "--heartbeat-interval", "10s",
                 "--poll-interval", "0")
    assert (s.grace_period, s.heartbeat_interval, s.poll_interval) == (90.0, 10.0, 0.0)
    assert settings("--import", "a", env={"KUBETASKS_WORKER_GRACE_PERIOD": "2m"}).grace_period == 120
    with pytest.raises(ConfigurationError, match=r"--heartbeat-interval='0s' is invalid: use a "
                                                 r"number of seconds > 0 or a duration, e.g. 0.5"):
        settings("--import", "a", "--heartbeat-interval", "0s")
