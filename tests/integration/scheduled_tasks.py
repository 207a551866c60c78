"""Tasks with schedules, for the workers of tests/integration/test_schedules_worker.py."""

from __future__ import annotations

from datetime import timedelta

from kubetasks import schedule, task


@task(schedule=timedelta(seconds=1))
def every_second() -> str:
    return "tick"


@task
def report(kind: str, *, lines: int = 10) -> str:
    return f"{kind}:{lines}"


schedule(report, cron="* * * * * *", timezone="Europe/Berlin", args=["daily"],
         kwargs={"lines": 3}, name="report-each-second")
