"""``kubetasks migrate``: the schema it creates, idempotence, and two migrators at once."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest

from kubetasks.cli import main
from kubetasks.migrations import available, migrate
from kubetasks.queries import query


@pytest.fixture
def empty_dsn(postgresql: psycopg.Connection[Any]) -> Iterator[str]:
    info = postgresql.info
    name = f"empty_{uuid.uuid4().hex[:8]}"
    admin = f"postgresql://{info.user}@{info.host}:{info.port}/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield f"postgresql://{info.user}@{info.host}:{info.port}/{name}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE {name} WITH (FORCE)")


def test_concurrent_migrators_apply_each_migration_once(empty_dsn: str) -> None:
    results: list[list[int]] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(migrate(empty_dsn))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    everything = [m.version for m in available()]
    # Each migration is applied once, by whichever migrator takes the lock for it first (each
    # runs in its own transaction, so two migrators may share the work).
    assert sorted(version for applied in results for version in applied) == everything
    assert len(results) == 4
    assert migrate(empty_dsn) == []


def test_migrate_command(empty_dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--database-url", empty_dsn, "migrate"]) == 0
    assert "applied migrations [1" in capsys.readouterr().out
    assert main(["--database-url", empty_dsn, "migrate"]) == 0
    assert "schema is up to date" in capsys.readouterr().out


def test_migrated_schema(postgresql: psycopg.Connection[Any]) -> None:
    columns = dict(postgresql.execute(
        "SELECT column_name, data_type FROM information_schema.columns"
        " WHERE table_name = 'kubetasks_tasks'").fetchall())
    assert columns["id"] == "bigint" and columns["claim_id"] == "uuid"
    assert columns["args"] == columns["kwargs"] == columns["context"] == "jsonb"
    assert columns["expected_at"] == columns["run_after"] == "timestamp with time zone"
    assert {"lost_count", "heartbeat_at", "worker_pod_uid", "worker_nonce", "errors"} <= set(columns)

    indexes = dict(postgresql.execute(
        "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'kubetasks_tasks'").fetchall())
    claim_index = indexes["kubetasks_tasks_claim_order"]
    assert "priority DESC, expected_at, run_after, id" in claim_index
    assert "WHERE (state = 'READY'" in claim_index
    assert "WHERE (state = 'RUNNING'" in indexes["kubetasks_tasks_running"]
    assert "(queue_name, run_after) WHERE (state = 'READY'" in indexes["kubetasks_tasks_next_run_after"]
    assert "(queue_name, expected_at) WHERE ((state = 'READY'" in indexes["kubetasks_tasks_ready_deadline"]

    triggers = [r[0] for r in postgresql.execute(
        "SELECT tgname FROM pg_trigger WHERE tgrelid = 'kubetasks_tasks'::regclass"
        " AND NOT tgisinternal").fetchall()]
    assert triggers == ["kubetasks_notify_enqueued"]
    versions = [r[0] for r in postgresql.execute("SELECT version FROM kubetasks_migrations")]
    assert versions == [m.version for m in available()]


def test_claim_walks_the_partial_index_instead_of_sorting(postgresql: psycopg.Connection[Any]) -> None:
    postgresql.execute("INSERT INTO kubetasks_tasks (queue_name, task_name, state, finished_at)"
                       " SELECT 'q', 't', 'SUCCESSFUL', now() FROM generate_series(1, 20000)")
    postgresql.execute("INSERT INTO kubetasks_tasks (queue_name, task_name)"
                       " SELECT 'q', 't' FROM generate_series(1, 50)")
    postgresql.execute("ANALYZE kubetasks_tasks")
    params = {"queue_names": ["q", "r"], "limit": 10, "pod_name": "p", "pod_uid": "u",
              "nonce": "n", "worker_id": "p/n"}
    plan = "\n".join(r[0] for r in postgresql.execute(
        ("EXPLAIN " + query("claim_tasks")).encode(), params))
    assert "kubetasks_tasks_claim_order" in plan
    # Only the few rows picked per queue are sorted (as "c"), never the table's ready rows.
    sort_keys = [line.split("Sort Key:")[1].strip() for line in plan.splitlines() if "Sort Key:" in line]
    assert all(key.startswith("c.") for key in sort_keys), plan


def test_queue_statistics_reads_only_the_partial_indexes(postgresql: psycopg.Connection[Any]) -> None:
    # Finished rows must cost the operator's step nothing: no scan of the table, every part of
    # the statement from a partial index of READY or RUNNING rows.
    postgresql.execute("INSERT INTO kubetasks_tasks (queue_name, task_name, state, finished_at)"
                       " SELECT 'q', 't', 'SUCCESSFUL', now() FROM generate_series(1, 20000)")
    postgresql.execute("INSERT INTO kubetasks_tasks (queue_name, task_name, expected_at)"
                       " SELECT 'q', 't', now() + i * interval '1 minute'"
                       " FROM generate_series(1, 50) AS i")
    postgresql.execute("ANALYZE kubetasks_tasks")
    params = {"queue_names": ["q"], "scan_limits": [1000], "horizons": [timedelta(seconds=15)],
              "default_seconds": [1.0], "age_factor": 2.0, "deadline_limits": [1000]}
    plan = "\n".join(r[0] for r in postgresql.execute(
        ("EXPLAIN " + query("queue_statistics")).encode(), params))
    assert "Seq Scan on kubetasks_tasks" not in plan, plan
    assert "Bitmap Heap Scan on kubetasks_tasks" not in plan, plan
    for index in ("claim_order", "next_run_after", "ready_deadline", "running"):
        assert f"kubetasks_tasks_{index}" in plan, plan
