"""No password, URL with password or Secret value in any log line or error of a worker or the
CLI pointed at a hostile database URL: one the driver cannot parse and quotes back."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from .worker_process import REPO_ROOT, TASKS_MODULE

HOSTILE = [
    # (the URL or Secret value, a piece of it that must never show)
    ("postgresql://app:Sup3r%Secret@127.0.0.1:1/app", "Sup3r"),
    ("postgresql://app:p@ss%zzW0rd@127.0.0.1:1/app", "zzW0rd"),
    ("opaque-T0ken-not-a-url", "T0ken"),
]


def kubetasks(*argv: str, url: str, seconds: float | None = None) -> str:
    """Everything ``kubetasks argv`` printed, with ``KUBETASKS_DATABASE_URL=url``; a worker is
    stopped after ``seconds`` (SIGTERM)."""
    path = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "KUBETASKS_DATABASE_URL": url, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen([sys.executable, "-m", "kubetasks.cli", "--log-level", "debug", *argv],
                               env=env, cwd=REPO_ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    if seconds is not None:
        time.sleep(seconds)
        process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=60)
    return output


@pytest.mark.parametrize(("url", "secret"), HOSTILE)
def test_a_worker_retrying_a_hostile_url_never_logs_it(url: str, secret: str) -> None:
    output = kubetasks("worker", "--import", TASKS_MODULE, "--health-port", "0", url=url, seconds=4)
    assert "error connecting" in output or "database unreachable" in output, output[-2000:]
    assert secret not in output


@pytest.mark.parametrize(("url", "secret"), HOSTILE)
@pytest.mark.parametrize("command", [["status"], ["migrate"], ["requeue"]])
def test_the_cli_never_shows_a_hostile_url(url: str, secret: str, command: list[str]) -> None:
    output = kubetasks(*command, url=url)
    assert "kubetasks: cannot connect to the database of KUBETASKS_DATABASE_URL" in output, output
    assert secret not in output
