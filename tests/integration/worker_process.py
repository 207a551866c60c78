"""Real ``kubetasks worker`` processes for the worker tests, started the way a pod starts them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import psycopg

from kubetasks import TaskResultStatus
from kubetasks.records import TaskRecord
from kubetasks.store import Store

REPO_ROOT = Path(__file__).resolve().parents[2]
TASKS_MODULE = "tests.integration.worker_tasks"
T = TypeVar("T")


def wait_until(probe: Callable[[], T | None], *, timeout: float = 10.0, interval: float = 0.02,
               what: str = "condition") -> T:
    """Call ``probe`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def wait_state(store: Store, task_id: str | int, *, finished: bool = True,
               timeout: float = 10.0) -> TaskRecord:
    """The task once it has finished (or, with ``finished=False``, once it is RUNNING)."""
    def probe() -> TaskRecord | None:
        record = store.get(task_id)
        done = record.state.is_finished if finished else record.state == TaskResultStatus.RUNNING
        return record if done else None
    return wait_until(probe, timeout=timeout,
                      what=f"task {task_id} {'finished' if finished else 'RUNNING'}")


def learned_durations(store: Store) -> dict[str, float]:
    """The mean run time per task name that completions taught the operator's estimates."""
    with psycopg.connect(store.conninfo) as conn:
        rows = conn.execute("SELECT task_name, mean_seconds FROM kubetasks_durations").fetchall()
    return dict(rows)


class WorkerProcess:
    """``with WorkerProcess(dsn, tmp_path, "--concurrency", "4") as worker: ...``

    Each process gets its own pod UID unless one is given, as pods do: processes sharing a
    pod UID would take each other's tasks away at start.
    """

    def __init__(self, dsn: str, directory: Path, *args: str, pod_uid: str | None = None,
                 name: str = "worker") -> None:
        self.pod_uid = pod_uid or f"pod-{uuid.uuid4()}"
        self.log_path = directory / f"{name}-{uuid.uuid4().hex[:6]}.log"
        self.command = [
            sys.executable, "-m", "kubetasks.cli", "--database-url", dsn, "worker",
            "--import", TASKS_MODULE, "--health-host", "127.0.0.1", "--health-port", "0", *args]
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("KUBETASKS_")}
        self.env.update(POD_NAME=name, POD_UID=self.pod_uid, NODE_NAME="test-node")
        self.process: subprocess.Popen[bytes] | None = None
        self._port: int | None = None

    def start(self) -> WorkerProcess:
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(self.command, cwd=REPO_ROOT, env=self.env,
                                            stdout=log, stderr=subprocess.STDOUT)
        return self

    def __enter__(self) -> WorkerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    # -- observing -----------------------------------------------------------------------

    def logs(self) -> list[dict[str, Any]]:
        entries = []
        for line in self.log_path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError:
                entries.append({"level": "raw", "message": line})
        return entries

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def wait_for_log(self, fragment: str, *, timeout: float = 10.0) -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            self._check_alive()
            return next((e for e in self.logs() if fragment in str(e.get("message"))), None)
        return wait_until(found, timeout=timeout, what=f"log {fragment!r}\n{self.log_tail()}")

    @property
    def port(self) -> int:
        if self._port is None:
            self._port = int(self.wait_for_log("health and metrics on")["health_port"])
        return self._port

    def get(self, path: str) -> tuple[int, str]:
        url = f"http://127.0.0.1:{self.port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def wait_ready(self, timeout: float = 60.0) -> None:
        wait_until(lambda: self.get("/readyz")[0] == 200, timeout=timeout,
                   what=f"/readyz\n{self.log_tail()}")

    def metric(self, name: str, **labels: str) -> float:
        """The value of one sample on /metrics (0 if absent)."""
        wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        key = f"{name}{{{wanted}}}" if labels else name
        for line in self.get("/metrics")[1].splitlines():
            sample, _, value = line.rpartition(" ")
            if _sorted_labels(sample) == key:
                return float(value)
        return 0.0

    # -- controlling ---------------------------------------------------------------------

    def send(self, signum: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def wait(self, timeout: float = 15.0) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def _check_alive(self) -> None:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"worker exited with {self.process.returncode}:\n"
                                 f"{self.log_tail()}")


def _sorted_labels(sample: str) -> str:
    name, brace, rest = sample.partition("{")
    if not brace:
        return name
    labels = sorted(rest.rstrip("}").split(","))
    return f"{name}{{{','.join(labels)}}}"
