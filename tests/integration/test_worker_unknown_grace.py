"""``--unknown-task-grace 0``: a real worker fails a fresh task naming no imported task at
once, as Django's workers do, instead of putting it back for a newer worker."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubetasks import TaskResultStatus
from kubetasks.backends import PostgresBackend
from kubetasks.store import Store
from tests.integration.test_worker_failures import insert_raw
from tests.integration.worker_process import WorkerProcess, wait_state

pytestmark = pytest.mark.timeout(90)


def test_zero_grace_fails_a_fresh_unknown_task_at_once(
        backend: PostgresBackend, store: Store, dsn: str, tmp_path: Path) -> None:
    fresh = insert_raw(dsn, "app.tasks.added_in_the_next_release", [])
    with WorkerProcess(dsn, tmp_path, "--unknown-task-grace", "0") as worker:
        worker.wait_ready()
        record = wait_state(store, fresh)
    assert record.state == TaskResultStatus.FAILED
    assert record.attempts == 1
    assert record.errors[0].exception_class_path == "kubetasks.exceptions.UnknownTaskError"
    assert "'app.tasks.added_in_the_next_release' is not registered" in record.errors[0].message
