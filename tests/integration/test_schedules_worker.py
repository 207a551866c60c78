"""Workers register the schedules their modules declare and fire them: two workers, one task
per tick, each run to its end."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import psycopg

from kubetasks.store import Store
from tests.integration.worker_process import WorkerProcess, wait_until

SCHEDULED = "tests.integration.scheduled_tasks"


def finished_ticks(dsn: str, name: str) -> list[tuple[object, str, object]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT schedule_tick, state::text, return_value FROM kubetasks_tasks "
            "WHERE schedule_name = %s ORDER BY schedule_tick", [name]).fetchall()


def test_two_workers_fire_and_run_each_tick_of_code_schedules_once(
        dsn: str, store: Store, tmp_path: Path) -> None:
    first = WorkerProcess(dsn, tmp_path, "--import", SCHEDULED, name="first")
    second = WorkerProcess(dsn, tmp_path, "--import", SCHEDULED, name="second")
    with first, second:
        wait_until(lambda: sum(1 for _, state, _ in finished_ticks(dsn, "report-each-second")
                               if state == "SUCCESSFUL") >= 4, timeout=30,
                   what="four ticks of report-each-second run")
        wait_until(lambda: len(finished_ticks(dsn, f"{SCHEDULED}.every_second")) >= 4,
                   timeout=30, what="four ticks of every_second")

    names = {r.schedule.name: r.schedule.when for r in store.list_schedules()}
    assert names == {"report-each-second": "cron * * * * * * Europe/Berlin",
                     f"{SCHEDULED}.every_second": "every 1s"}
    reports = finished_ticks(dsn, "report-each-second")
    assert {value for _, state, value in reports if state == "SUCCESSFUL"} == {"daily:3"}
    for name in ("report-each-second", f"{SCHEDULED}.every_second"):
        ticks = [tick for tick, _, _ in finished_ticks(dsn, name)]
        assert all(b - a == ticks[1] - ticks[0] for a, b in pairwise(ticks)), ticks
        assert len(set(ticks)) == len(ticks)
