"""``kubetasks schedules``: registering the schedules of --import modules, listing them (table
and JSON), and deleting one."""

from __future__ import annotations

import json
import time

import pytest

from kubetasks.cli import main
from kubetasks.schedules import fire_due
from kubetasks.store import Store

SCHEDULED = "tests.integration.scheduled_tasks"


def run(capsys: pytest.CaptureFixture[str], dsn: str, *args: str) -> tuple[int, str, str]:
    code = main(["--database-url", dsn, *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_register_list_and_delete(dsn: str, store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, dsn, "schedules") == (0, "no schedules found\n", "")

    code, out, _ = run(capsys, dsn, "schedules", "--import", SCHEDULED)
    header, *rows = out.splitlines()
    assert code == 0
    assert header.split() == ["NAME", "QUEUE", "TASK", "WHEN", "MISSED", "NEXT", "LAST", "LAST",
                              "TASK", "SOURCE"]
    assert [row.split()[:3] for row in rows] == [
        ["report-each-second", "default", f"{SCHEDULED}.report"],
        [f"{SCHEDULED}.every_second", "default", f"{SCHEDULED}.every_second"]]

    time.sleep(1.1)  # both fire every second
    fired = fire_due(store, ["default"])
    code, out, _ = run(capsys, dsn, "-o", "json", "schedules", "--queue", "default")
    listed = {s["name"]: s for s in json.loads(out)["schedules"]}
    report = listed["report-each-second"]
    assert (report["cron"], report["timezone"], report["args"], report["kwargs"], report["missed"],
            report["source"]) == ("* * * * * *", "Europe/Berlin", ["daily"], {"lines": 3}, "skip",
                                  "code")
    assert listed[f"{SCHEDULED}.every_second"]["every_seconds"] == 1.0
    assert {s["last_task_id"] for s in listed.values()} == set(fired)
    assert {s["last_task_state"] for s in listed.values()} == {"READY"}

    code, out, _ = run(capsys, dsn, "-o", "json", "schedules", "--delete", "report-each-second")
    assert [s["name"] for s in json.loads(out)["schedules"]] == [f"{SCHEDULED}.every_second"]
    with pytest.raises(SystemExit) as refused:
        run(capsys, dsn, "schedules", "--delete", "report-each-second")
    assert refused.value.code == 2
    assert "--delete 'report-each-second' names no schedule" in capsys.readouterr().err
