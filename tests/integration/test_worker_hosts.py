"""A worker where things around it are not as expected: a database without the schema yet, a
health port another process holds."""

from __future__ import annotations

import socket
from pathlib import Path

import psycopg
import pytest

from kubetasks.backends import PostgresBackend
from kubetasks.migrations import migrate
from kubetasks.store import Store
from tests.integration import worker_tasks
from tests.integration.worker_process import WorkerProcess, wait_state

pytestmark = pytest.mark.timeout(90)


def test_a_missing_schema_is_named_and_waited_out(backend: PostgresBackend, store: Store,
                                                  dsn: str, tmp_path: Path) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")
    with WorkerProcess(dsn, tmp_path) as worker:
        entry = worker.wait_for_log("run `kubetasks migrate`", timeout=20)
        assert 'relation "kubetasks_tasks" does not exist' in entry["message"]
        assert worker.get("/readyz")[0] == 503
        migrate(dsn)
        result = worker_tasks.add.enqueue(2, 3)
        assert wait_state(store, result.id, timeout=20).return_value == 5
        worker.wait_ready()


def test_a_health_port_in_use_is_named_with_how_to_choose_another(
        dsn: str, tmp_path: Path) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        second = WorkerProcess(dsn, tmp_path, "--health-port", str(port), name="second")
        with second:
            assert second.wait(30) == 1
    output = second.log_path.read_text()
    assert "Traceback" not in output
    assert output.strip().splitlines()[-1] == (
        f"kubetasks: cannot serve /healthz, /readyz and /metrics on 127.0.0.1:{port}: Address "
        "already in use (another worker on this host?); choose another port with --health-port "
        "PORT or KUBETASKS_HEALTH_PORT, or 0 to pick a free one")


def test_health_port_zero_picks_a_free_port_and_logs_it(dsn: str, tmp_path: Path) -> None:
    with WorkerProcess(dsn, tmp_path) as first, WorkerProcess(dsn, tmp_path) as second:
        assert first.port != second.port  # both asked for 0, as WorkerProcess does
        first.wait_ready()
        second.wait_ready()
