"""On a terminal ``kubetasks`` colours states and shows progress; piped, or with ``NO_COLOR``,
it prints plain text only. Run as a real process, on a real pseudo-terminal."""

from __future__ import annotations

import os
import pty
import subprocess
import sys

import psycopg

from .worker_process import REPO_ROOT

TASK = "tests.integration.tasks_for_tests.send_welcome"
ESC = "\x1b["


def on_terminal(dsn: str, *argv: str, env: dict[str, str] | None = None) -> str:
    """What the command wrote to its terminal (stdout and stderr both)."""
    controller, terminal = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "kubetasks.cli", "--database-url", dsn, *argv],
                               stdin=terminal, stdout=terminal, stderr=terminal, cwd=REPO_ROOT,
                               env={**os.environ, "TERM": "xterm", **(env or {})})
    os.close(terminal)
    chunks = []
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # the terminal closed: the process is gone
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(controller)
    assert process.wait(timeout=60) == 0, b"".join(chunks)
    return b"".join(chunks).decode()


def piped(dsn: str, *argv: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "kubetasks.cli", "--database-url", dsn, *argv],
                          capture_output=True, text=True, timeout=60, cwd=REPO_ROOT,
                          env={k: v for k, v in os.environ.items() if k != "NO_COLOR"})
    assert done.returncode == 0, done.stderr
    return done


def add_tasks(dsn: str, count: int, state: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO kubetasks_tasks (queue_name, task_name) "
                     "SELECT 'emails', %s FROM generate_series(1, %s)", [TASK, count])
        conn.execute("UPDATE kubetasks_tasks SET state = %s::kubetasks_state,"
                     " finished_at = now() - interval '40 days'", [state])


def test_states_are_coloured_on_a_terminal_only(dsn: str) -> None:
    add_tasks(dsn, 1, "FAILED")
    assert f"{ESC}31mFAILED" in on_terminal(dsn, "tasks")
    plain = on_terminal(dsn, "tasks", env={"NO_COLOR": "1"})
    assert "FAILED" in plain and ESC not in plain
    done = piped(dsn, "tasks")
    assert "FAILED" in done.stdout and ESC not in done.stdout


def test_a_long_prune_shows_progress_on_a_terminal_only(dsn: str) -> None:
    add_tasks(dsn, 1200, "SUCCESSFUL")
    shown = on_terminal(dsn, "prune", "--successful", "1d")
    assert "pruning" in shown and "100%" in shown and "deleted 1200 finished tasks" in shown

    add_tasks(dsn, 1200, "SUCCESSFUL")
    done = piped(dsn, "prune", "--successful", "1d")
    assert (done.stdout, done.stderr) == ("deleted 1200 finished tasks\n", "")


def test_a_long_requeue_shows_progress_on_a_terminal(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO kubetasks_tasks (queue_name, task_name, state, claim_id,"
                     " worker_pod, heartbeat_at) SELECT 'emails', %s, 'RUNNING', gen_random_uuid(),"
                     " 'pod-x', now() - interval '10 minutes' FROM generate_series(1, 1200)", [TASK])
    shown = on_terminal(dsn, "requeue", "--stale", "5m")
    assert "requeueing" in shown and "100%" in shown and "requeued 1200 tasks" in shown
