"""``kubetasks pause``, ``resume`` and ``limit`` against a real database."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from kubetasks.cli import main
from kubetasks.identity import WorkerIdentity
from kubetasks.records import QueueSettings
from kubetasks.store import Store
from tests.integration.tasks_for_tests import send_welcome

WORKER = WorkerIdentity(pod_name="pod", pod_uid="uid", nonce="n")


def run(capsys: pytest.CaptureFixture[str], dsn: str, *args: str) -> tuple[int, str, str]:
    try:
        code = main(["--database-url", dsn, *args])
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_pause_stops_claims_and_resume_restores_them(
        dsn: str, store: Store, backend: object, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, dsn, "pause", "emails")
    assert code == 0 and "paused emails" in out
    send_welcome.enqueue(1)  # an enqueue still lands

    assert store.claim(["emails"], 5, WORKER) == []
    code, out, _ = run(capsys, dsn, "-o", "json", "resume", "emails")
    assert code == 0 and json.loads(out)["paused"] is False
    assert len(store.claim(["emails"], 5, WORKER)) == 1


def test_limit_sets_shows_and_lifts(dsn: str, store: Store,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    code, _, _ = run(capsys, dsn, "limit", "emails", "--max-running", "2", "--rate", "10/1m")
    assert code == 0
    assert store.queue_settings(["emails"]) == [
        QueueSettings("emails", max_running=2, rate_limit=10, rate_period=timedelta(minutes=1))]

    run(capsys, dsn, "limit", "emails", "--rate", "none")  # --max-running kept
    code, out, _ = run(capsys, dsn, "limit", "emails")
    header, row = out.splitlines()
    assert header.split() == ["QUEUE", "PAUSED", "MAX", "RUNNING", "RATE"]
    assert row.split() == ["emails", "no", "2", "-"]


@pytest.mark.parametrize(("args", "message"), [
    (["--max-running", "0"], "--max-running '0' is invalid: use a whole number from 1"),
    (["--rate", "10"], "--rate '10' is invalid: use STARTS/PERIOD, e.g. 10/1m"),
    (["--rate", "10/0s"], "--rate '10/0s' is invalid"),
    (["--rate", "x/1m"], "--rate 'x/1m' is invalid"),
])
def test_bad_limits_are_refused_naming_the_value(dsn: str, store: Store, args: list[str],
                                                 message: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, dsn, "limit", "emails", *args)
    assert code == 2 and message in err
    assert store.queue_settings(["emails"]) == [QueueSettings("emails")]
