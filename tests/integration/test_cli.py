"""The ``kubetasks`` command's operator-facing subcommands against a real database."""

from __future__ import annotations

import importlib.metadata
import json

import psycopg
import pytest

from kubetasks.cli import main
from kubetasks.identity import WorkerIdentity
from kubetasks.store import Store

TASK = "tests.integration.tasks_for_tests.send_welcome"
IMPORT = ["--import", "tests.integration.tasks_for_tests"]


def run(capsys: pytest.CaptureFixture[str], dsn: str, *args: str) -> tuple[int, str, str]:
    code = main(["--database-url", dsn, *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_enqueue_status_tasks_and_cancel(dsn: str, store: Store,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, dsn, "enqueue", TASK, *IMPORT, "--args", "[7]",
                       "--kwargs", json.dumps({"template": "cli"}))
    assert code == 0
    task_id = out.strip()
    assert store.get(task_id).kwargs == {"template": "cli"}
    run(capsys, dsn, "enqueue", TASK, *IMPORT, "--args", "[8]")

    code, out, _ = run(capsys, dsn, "status")
    header, row = out.splitlines()
    assert header.split()[:5] == ["QUEUE", "READY", "SCHEDULED", "RUNNING", "OVERDUE"]
    assert row.split()[:5] == ["emails", "2", "0", "0", "0"]

    code, out, _ = run(capsys, dsn, "cancel", task_id)
    assert (code, out.strip()) == (0, f"cancelled task {task_id}")
    code, out, _ = run(capsys, dsn, "cancel", task_id)
    assert (code, out.strip()) == (1, f"task {task_id} is CANCELLED, not READY or RUNNING: "
                                      "nothing to cancel")

    code, out, _ = run(capsys, dsn, "tasks", "--state", "CANCELLED")
    assert [line.split()[:3] for line in out.splitlines()] == [["ID", "STATE", "QUEUE"],
                                                               [task_id, "CANCELLED", "emails"]]


def test_bad_input_is_refused_with_the_value_named(dsn: str, store: Store,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, dsn, "enqueue", TASK, *IMPORT, "--args", "[1, ")
    assert code == 2 and "--args/--kwargs must be JSON" in err
    code, _, err = run(capsys, dsn, "enqueue", TASK, *IMPORT, "--args", '["x"]', "--kwargs",
                       '{"colour": "red"}')
    assert code == 1 and "unexpected keyword argument 'colour'" in err
    code, _, err = run(capsys, dsn, "enqueue", "app.missing", *IMPORT)
    assert code == 1 and "task 'app.missing' is not registered" in err
    with pytest.raises(SystemExit):
        main(["--database-url", dsn, "prune", "--successful", "a week"])
    assert "duration 'a week' is invalid" in capsys.readouterr().err
    assert store.list_tasks() == []


def test_requeue_a_dead_pod_and_prune(dsn: str, store: Store,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, dsn, "enqueue", TASK, *IMPORT, "--args", "[1]")
    claimed = store.claim(["emails"], 1, WorkerIdentity("pod-x", "uid-x", "n"))[0]

    code, out, _ = run(capsys, dsn, "requeue", "--pod-uid", "uid-x")
    header, row, total = out.splitlines()
    assert code == 0 and header.split() == ["ID", "QUEUE", "TASK", "WORKER", "STATE"]
    assert row.split() == [str(claimed.id), "emails", TASK, "pod-x", "READY"]
    assert total == "requeued 1 tasks"

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("UPDATE kubetasks_tasks SET state = 'CANCELLED',"
                     " finished_at = now() - interval '40 days'")
    code, out, _ = run(capsys, dsn, "prune", "--failed", "30d")
    assert (code, out.strip()) == (0, "deleted 1 finished tasks")


def test_version_is_the_installed_distributions(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"kubetasks {importlib.metadata.version('kubetasks')}"
