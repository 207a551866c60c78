"""Every error of the ``kubetasks`` command is one line naming the value, with a non-zero exit
and no traceback; values that would do harm are refused before anything is touched."""

from __future__ import annotations

import subprocess
import sys

import psycopg
import pytest

from kubetasks.cli import main
from kubetasks.identity import WorkerIdentity
from kubetasks.store import Store

from .worker_process import REPO_ROOT

TASK = "tests.integration.tasks_for_tests.send_welcome"


def refused(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Run ``argv``; the one line it printed on stderr, after a non-zero exit."""
    try:
        code = main(list(argv))
    except SystemExit as stop:
        code = int(stop.code or 0)
    out, err = capsys.readouterr()
    assert code != 0, out
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err.strip()


@pytest.mark.parametrize(("argv", "named"), [
    (["tasks", "--limit=-1"], "--limit '-1'"),
    (["requeue", "--stale", "inf"], "'inf'"),
    (["requeue", "--stale=-5m"], "--stale '-5m'"),
    (["requeue", "--max-lost=-1"], "--max-lost '-1'"),
    (["prune", "--failed", "1e300d"], "'1e300d'"),
    (["--log-level", "loud", "status"], "log level 'loud'"),
    (["tasks", "--queue", "a\0b"], "'a\\x00b'"),
    (["enqueue", TASK, "--import", "no_such_module_here"], "--import 'no_such_module_here'"),
])
def test_bad_values_are_refused_in_one_line_naming_them(
        dsn: str, capsys: pytest.CaptureFixture[str], argv: list[str], named: str) -> None:
    assert named in refused(capsys, "--database-url", dsn, *argv)


def test_requeue_stale_zero_leaves_a_live_workers_task_alone(
        dsn: str, store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    main(["--database-url", dsn, "enqueue", TASK, "--import", "tests.integration.tasks_for_tests",
          "--args", "[1]"])
    claimed = store.claim(["emails"], 1, WorkerIdentity("pod-x", "uid-x", "n"))[0]
    for stale in ("0", "0s", "-1m", "10s"):
        assert "--stale" in refused(capsys, "--database-url", dsn, "requeue", f"--stale={stale}")
    assert store.get(claimed.id).state == "RUNNING"


def test_a_missing_schema_says_to_run_migrate(dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE kubetasks_tasks CASCADE")
    assert "run `kubetasks migrate`" in refused(capsys, "--database-url", dsn, "status")


@pytest.mark.parametrize(("url", "named"), [
    ("postgresql://app:pw@127.0.0.1:1/app", '"127.0.0.1", port 1 failed'),
    ("postgresql://app:pw@no-such-host.invalid/app", "no-such-host.invalid"),
])
def test_an_unreachable_database_is_named_with_its_reason_not_a_pool_timeout(
        capsys: pytest.CaptureFixture[str], url: str, named: str) -> None:
    line = refused(capsys, "--database-url", url, "tasks")
    assert named in line and "cannot connect to the database of --database-url" in line
    assert "couldn't get a connection" not in line and ":pw@" not in line


def test_run_as_a_command_it_prints_no_traceback() -> None:
    done = subprocess.run([sys.executable, "-m", "kubetasks.cli", "--database-url",
                           "postgresql://app:pw@127.0.0.1:1/app", "status"],
                          capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith("kubetasks: cannot connect") and len(done.stderr.splitlines()) == 1
