"""What a real worker shows an operator: /metrics as Prometheus parses it, and its task log
lines with the fields docs/observability.md promises."""

from __future__ import annotations

import importlib.metadata
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from kubetasks.backends import PostgresBackend
from kubetasks.store import Store
from tests.integration import observed_tasks
from tests.integration.worker_process import WorkerProcess, wait_state, wait_until

pytestmark = pytest.mark.timeout(90)

EVENTS = {"task.started", "task.succeeded", "task.retrying", "task.failed", "task.put_back",
          "task.timed_out", "task.claim_lost", "task.released", "task.lost_returned",
          "task.unwritable", "task.unrecorded"}


@pytest.fixture
def worker(backend: PostgresBackend, dsn: str, tmp_path: Path) -> Iterator[WorkerProcess]:
    with WorkerProcess(dsn, tmp_path, "--import", "tests.integration.observed_tasks",
                       "--queue", observed_tasks.QUEUE, "--concurrency", "3") as process:
        process.wait_ready()
        yield process
        process.send(signal.SIGTERM)
        assert process.wait() == 0


def scrape(worker: WorkerProcess) -> tuple[str, dict[str, Sample]]:
    status, text = worker.get("/metrics")
    assert status == 200
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}"] = sample
    return text, samples


def value(samples: dict[str, Sample], key: str) -> float:
    assert key in samples, f"{key} not among {sorted(samples)}"
    return samples[key].value


def test_metrics_parse_and_show_the_process_the_version_and_the_slots(
        worker: WorkerProcess, store: Store, tmp_path: Path) -> None:
    release = tmp_path / "release"
    held = observed_tasks.holds_until.enqueue(str(release))
    done = observed_tasks.double.enqueue(21)
    wait_state(store, done.id)
    wait_state(store, held.id, finished=False)
    text, samples = scrape(worker)

    assert value(samples, "kubetasks_worker_slots{}") == 3
    assert value(samples, "kubetasks_worker_slots_in_use{}") == 1  # holds_until
    version = importlib.metadata.version("kubetasks")
    assert value(samples, f"kubetasks_worker_build_info{{version={version}}}") == 1
    assert value(samples, "process_resident_memory_bytes{}") > 0
    assert value(samples, "process_cpu_seconds_total{}") > 0
    assert value(samples, "process_start_time_seconds{}") > 0
    assert value(samples, "kubetasks_worker_tasks_succeeded_total{queue=observed,task_name="
                          "tests.integration.observed_tasks.double}") == 1
    assert value(samples, "kubetasks_worker_tasks_claimed_total{queue=observed}") == 2
    # Counters of the worker's queue are there at 0 before anything happened to them, so that
    # increase() sees their first step.
    assert value(samples, "kubetasks_worker_tasks_released_total{queue=observed}") == 0
    assert value(samples, "kubetasks_worker_claims_lost_total{queue=observed}") == 0
    assert not [key for key in samples if "_created" in key]
    assert "_created" not in text

    release.touch()
    wait_state(store, held.id)
    wait_until(lambda: worker.metric("kubetasks_worker_slots_in_use") == 0,
               what="the slot given back")


def test_promtool_finds_nothing_to_fix_in_the_scrape(worker: WorkerProcess, store: Store,
                                                    tmp_path: Path) -> None:
    wait_state(store, observed_tasks.double.enqueue(1).id)
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is missing: apt-get install --no-install-recommends prometheus")
    text, _ = scrape(worker)
    checked = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                             text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout + checked.stderr == ""


def task_lines(worker: WorkerProcess, task_id: int | str) -> list[dict[str, Any]]:
    return [e for e in worker.logs() if e.get("task_id") == int(task_id)]


def test_every_task_line_carries_its_event_attempt_duration_and_worker(
        worker: WorkerProcess, store: Store) -> None:
    done = observed_tasks.double.enqueue(2)
    failing = observed_tasks.leaks_a_url.enqueue()
    finished = wait_state(store, done.id), wait_state(store, failing.id)
    wait_until(lambda: any(e.get("event") == "task.failed" for e in task_lines(worker, failing.id)),
               what="the failure logged")

    for record in finished:
        lines = task_lines(worker, record.id)
        for line in lines:
            assert line["event"] in EVENTS, line
            assert line["queue"] == observed_tasks.QUEUE and line["task_name"] == record.task_name
            assert isinstance(line["duration"], int | float) and line["duration"] >= 0, line
            assert isinstance(line["attempt"], int), line
            assert line["worker_id"] == record.worker_ids[line["attempt"] - 1], line
    events = [(e["event"], e["attempt"]) for e in task_lines(worker, done.id)]
    assert events == [("task.started", 1), ("task.succeeded", 1)]
    events = [(e["event"], e["attempt"]) for e in task_lines(worker, failing.id)]
    assert events == [("task.started", 1), ("task.retrying", 1), ("task.started", 2),
                      ("task.failed", 2)]
    started = task_lines(worker, done.id)[0]
    assert started["message"] == "task started" and started["queue_wait"] >= 0
    assert started["level"] == "info"


def test_task_lines_keep_secrets_masked(worker: WorkerProcess, store: Store) -> None:
    failing = observed_tasks.leaks_a_url.enqueue()
    wait_state(store, failing.id)
    wait_until(lambda: any(e.get("event") == "task.failed" for e in task_lines(worker, failing.id)),
               what="the failure logged")
    log = worker.log_path.read_text()
    assert "hunter2-in-a-task" not in log
    lines = task_lines(worker, failing.id)
    assert any("postgresql://app:***@db.internal/app" in e.get("exception", "") for e in lines)
