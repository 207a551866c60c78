"""``kubetasks`` as kubectl users expect it, against a real database: ``-o table|json|yaml``,
global flags after the command, ``show``, ``retry``, ``--dry-run``, counts that are always
printed, human durations and times, and batches for many rows."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest
import yaml

from kubetasks.cli import main
from kubetasks.identity import WorkerIdentity
from kubetasks.result import TaskError
from kubetasks.store import Outcome, Store

TASK = "tests.integration.tasks_for_tests.send_welcome"
IMPORT = ["--import", "tests.integration.tasks_for_tests"]
WORKER = WorkerIdentity("pod-x", "uid-x", "n")


def run(capsys: pytest.CaptureFixture[str], dsn: str, *args: str) -> tuple[int, str, str]:
    """The command with the database URL given after the subcommand, as kubectl allows."""
    try:
        code = main([*args, "--database-url", dsn])
    except SystemExit as stop:
        code = int(stop.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def enqueue(capsys: pytest.CaptureFixture[str], dsn: str, user_id: int) -> int:
    code, out, _ = run(capsys, dsn, "enqueue", TASK, *IMPORT, "--args", f"[{user_id}]")
    assert code == 0
    return int(out)


def failed_task(store: Store, capsys: pytest.CaptureFixture[str], dsn: str) -> int:
    """A task whose one attempt failed, written as the worker writes it."""
    task_id = enqueue(capsys, dsn, 1)
    claimed = store.claim(["emails"], 1, WORKER)[0]
    error = TaskError.of_class(RuntimeError, "smtp refused", attempt=1, worker_id="pod-x/n",
                               traceback='Traceback (most recent call last):\n  File "app.py"\n'
                                         "RuntimeError: smtp refused\n")
    assert claimed.claim_id and store.fail(claimed.claim_id, error.to_json())
    return task_id


def test_every_data_command_prints_json_and_yaml(dsn: str, store: Store,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    task_id = enqueue(capsys, dsn, 7)
    code, out, _ = run(capsys, dsn, "status", "-o", "json")
    queue = json.loads(out)["queues"][0]
    assert code == 0 and queue | {"next_deadline": None} == {
        "queue": "emails", "ready": 1, "scheduled": 0, "running": 0, "overdue": 0,
        "next_deadline": None}

    code, out, _ = run(capsys, dsn, "-o", "yaml", "tasks")
    listed = yaml.safe_load(out)["tasks"]
    assert [(t["id"], t["state"], t["queue"], t["task"]) for t in listed] == [
        (task_id, "READY", "emails", TASK)]
    assert listed[0]["enqueued_at"].startswith("20")  # ISO text, the same in JSON and YAML

    code, out, _ = run(capsys, dsn, "show", str(task_id), "--output", "json")
    shown = json.loads(out)
    assert (shown["id"], shown["args"], shown["attempts"], shown["errors"]) == (task_id, [7], 0, [])

    for command in (["cancel", str(task_id)], ["retry", str(task_id)]):
        code, out, err = run(capsys, dsn, *command, "-o", "json")
        assert code == 0 and json.loads(out)["id"] == task_id, err
    code, out, _ = run(capsys, dsn, "requeue", "-o", "json")
    assert json.loads(out) == {"requeued": 0, "dry_run": False, "tasks": []}
    code, out, _ = run(capsys, dsn, "prune", "-o", "yaml")
    assert yaml.safe_load(out) == {"deleted": 0, "dry_run": False, "successful_older_than": "7d",
                                   "failed_older_than": "30d"}


def test_tables_show_human_times(dsn: str, store: Store,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    enqueue(capsys, dsn, 1)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("UPDATE kubetasks_tasks SET enqueued_at = now() - interval '3 minutes 5 s'")
    code, out, _ = run(capsys, dsn, "tasks")
    header, row = out.splitlines()
    assert code == 0
    assert header.split() == ["ID", "STATE", "QUEUE", "TASK", "ATTEMPTS", "LOST", "ENQUEUED",
                              "FINISHED"]
    assert row.split()[4:] == ["0/3", "0", "3m5s", "ago", "-"]


def test_show_a_failed_task_in_full_then_retry_it(dsn: str, store: Store,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    task_id = failed_task(store, capsys, dsn)
    code, out, _ = run(capsys, dsn, "show", str(task_id))
    assert code == 0
    fields = dict(line.split(":", 1) for line in out.splitlines() if not line.startswith(" "))
    assert fields["State"].strip() == "FAILED" and fields["Queue"].strip() == "emails"
    assert fields["Attempts"].strip() == "1/3 (lost 0)" and fields["Worker"].strip() == "pod-x"
    assert "attempt 1 on pod-x/n: builtins.RuntimeError: smtp refused" in out
    assert "    RuntimeError: smtp refused" in out  # the traceback, indented under its error

    code, out, _ = run(capsys, dsn, "tasks", "--state", "failed", "-o", "json")  # any case
    assert [t["id"] for t in json.loads(out)["tasks"]] == [task_id]

    code, out, _ = run(capsys, dsn, "retry", str(task_id), "--dry-run")
    assert (code, out.strip()) == (0, f"would retry task {task_id}")
    assert store.get(task_id).state == "FAILED"

    code, out, _ = run(capsys, dsn, "retry", str(task_id))
    assert (code, out.strip()) == (0, f"retried task {task_id}")
    again = store.get(task_id)
    assert again.state == "READY" and again.finished_at is None
    assert [e.message for e in again.errors] == ["smtp refused"]  # history kept
    assert store.claim(["emails"], 1, WORKER)[0].id == task_id  # and claimable now

    code, out, _ = run(capsys, dsn, "retry", str(task_id))
    assert (code, out.strip()) == (1, f"task {task_id} is RUNNING, not FAILED or CANCELLED: "
                                      "nothing to retry")


@pytest.mark.parametrize("command", ["show", "cancel", "retry"])
def test_a_missing_task_is_said_not_to_exist(dsn: str, capsys: pytest.CaptureFixture[str],
                                             command: str) -> None:
    code, out, err = run(capsys, dsn, command, "9999")
    assert code == 1 and out == ""
    assert err.startswith("kubetasks: task 9999 does not exist") and len(err.splitlines()) == 1


def test_a_task_id_that_is_no_number_is_refused_naming_it(
        dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, dsn, "show", "abc")
    assert code == 2 and "task id 'abc' is invalid" in err


def test_dry_runs_change_nothing_and_say_what_would(dsn: str, store: Store,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    ready = enqueue(capsys, dsn, 1)
    code, out, _ = run(capsys, dsn, "cancel", str(ready), "--dry-run")
    assert (code, out.strip()) == (0, f"would cancel task {ready}")
    assert store.get(ready).state == "READY"

    running = store.claim(["emails"], 1, WORKER)[0]
    code, out, _ = run(capsys, dsn, "requeue", "--pod-uid", "uid-x", "--dry-run")
    assert out.splitlines()[-1] == "would requeue 1 tasks"
    assert out.splitlines()[1].split() == [str(running.id), "emails", TASK, "pod-x", "READY"]
    assert store.get(running.id).state == "RUNNING"

    assert running.claim_id
    store.complete([Outcome(running.claim_id, "null", 0.1)])
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("UPDATE kubetasks_tasks SET finished_at = now() - interval '2 hours'"
                     " WHERE state = 'SUCCESSFUL'")
    code, out, _ = run(capsys, dsn, "prune", "--successful", "1h30m", "--dry-run")
    assert (code, out.strip()) == (0, "would delete 1 finished tasks")
    assert store.get(running.id).state == "SUCCESSFUL"
    code, out, _ = run(capsys, dsn, "prune", "--successful", "2d12h")
    assert out.strip() == "deleted 0 finished tasks"
    code, out, _ = run(capsys, dsn, "prune", "--successful", "1h30m")
    assert out.strip() == "deleted 1 finished tasks"


def test_requeue_and_prune_always_say_how_many(dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, dsn, "requeue")[1] == "requeued 0 tasks\n"
    assert run(capsys, dsn, "requeue", "--pod-uid", "nobody")[1] == "requeued 0 tasks\n"
    assert run(capsys, dsn, "prune")[1] == "deleted 0 finished tasks\n"


@pytest.mark.parametrize("age", ["-1d", "-90s"])
def test_prune_refuses_a_negative_age(dsn: str, store: Store, capsys: pytest.CaptureFixture[str],
                                      age: str) -> None:
    code, _, err = run(capsys, dsn, "prune", f"--failed={age}")
    assert code == 2 and f"--failed '{age}' is out of range: use from 0s to 36500d" in err


def test_many_lost_tasks_are_requeued_in_batches(dsn: str, store: Store,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO kubetasks_tasks (queue_name, task_name) "
                     "SELECT 'emails', %s FROM generate_series(1, 1200)", [TASK])
    assert len(store.claim(["emails"], 1200, WORKER)) == 1200
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("UPDATE kubetasks_tasks SET heartbeat_at = now() - interval '10 minutes'")
    code, out, _ = run(capsys, dsn, "requeue", "--stale", "5m", "-o", "json")
    result: dict[str, Any] = json.loads(out)
    assert code == 0 and result["requeued"] == 1200
    assert {t["state"] for t in result["tasks"]} == {"READY"}
    assert len(store.list_tasks(state="READY", limit=2000)) == 1200


def test_global_flags_go_before_or_after_the_command(dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    before = main(["--database-url", dsn, "-o", "json", "--log-level", "warning", "status"])
    out_before = capsys.readouterr().out
    after = main(["status", "--log-level", "warning", "-o", "json", "--database-url", dsn])
    assert (before, after) == (0, 0) and json.loads(out_before) == json.loads(capsys.readouterr().out)
    _, out, _ = run(capsys, dsn, "-o", "json", "status", "-o", "table")  # the last one wins
    assert out.startswith("no queue has")


def test_a_bad_log_level_in_the_environment_is_refused_naming_the_variable(
        dsn: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBETASKS_LOG_LEVEL", "loud")
    code, out, err = run(capsys, dsn, "status")
    assert (code, out) == (2, "") and "KUBETASKS_LOG_LEVEL='loud' is invalid: use one of" in err


def test_control_characters_in_a_row_never_reach_the_terminal(
        dsn: str, store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("INSERT INTO kubetasks_tasks (queue_name, task_name, args)"
                           " VALUES ('emails', 'app.\x1b[2Jwipe', '[\"\\u001b]0;owned\\u0007\"]')"
                           " RETURNING id").fetchone()
    assert row is not None
    task_id = row[0]
    _, listed, _ = run(capsys, dsn, "tasks")
    _, shown, _ = run(capsys, dsn, "show", str(task_id))
    for out in (listed, shown):
        assert "\x1b" not in out and "\x07" not in out
    assert "app.\\x1b[2Jwipe" in listed and "app.\\x1b[2Jwipe" in shown
    _, out, _ = run(capsys, dsn, "show", str(task_id), "-o", "json")
    assert json.loads(out)["task"] == "app.\x1b[2Jwipe"  # JSON escapes it, and keeps it exact


def test_a_running_task_is_cancelled_by_its_worker(dsn: str, store: Store,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    task_id = enqueue(capsys, dsn, 1)
    store.claim(["emails"], 1, WORKER)
    code, out, _ = run(capsys, dsn, "cancel", str(task_id), "--dry-run")
    assert (code, out.strip()) == (0, f"would cancel task {task_id}")
    assert store.get(task_id).cancelled_at is None

    code, out, _ = run(capsys, dsn, "cancel", str(task_id))
    assert (code, out.strip()) == (0, f"cancel of task {task_id} requested; it is RUNNING until "
                                      "its worker stops it")
    record = store.get(task_id)
    assert record.state == "RUNNING" and record.cancelled_at is not None

    code, out, _ = run(capsys, dsn, "cancel", str(task_id))
    assert code == 1 and out.startswith(f"cancel of task {task_id} was already requested ")
    assert f" by {record.cancelled_by}; it is RUNNING until its worker stops it" in out
    code, out, _ = run(capsys, dsn, "show", str(task_id))
    assert f"by {record.cancelled_by}" in next(line for line in out.splitlines()
                                             if line.startswith("Cancelled:"))
