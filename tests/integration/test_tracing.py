"""OpenTelemetry across a real enqueue and a real worker process: the trace context at enqueue
is stored with the task, and the worker's span for the run is its child, with the queue, the
task name, the attempt and the outcome."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from kubetasks.store import Store
from tests.integration.worker_process import WorkerProcess, wait_state

TRACED = "tests.integration.traced_tasks"


@pytest.fixture(scope="module")
def tracer_provider() -> InMemorySpanExporter:
    """The enqueueing side's SDK (set once per process, as an application does)."""
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    trace.set_tracer_provider(provider)
    return memory


@pytest.mark.usefixtures("backend", "tracer_provider")
def test_the_worker_span_of_a_run_is_a_child_of_the_span_that_enqueued_it(
        store: Store, dsn: str, tmp_path: Path) -> None:
    from tests.integration.traced_tasks import traced_double, traced_fail

    with trace.get_tracer("test").start_as_current_span("handle request") as request:
        doubled = traced_double.enqueue(21)
        failed = traced_fail.enqueue()
    untraced = traced_double.enqueue(1)  # outside any span: no context is stored
    assert store.get(doubled.id).trace_context is not None
    assert store.get(untraced.id).trace_context is None

    spans_file = tmp_path / "spans.jsonl"
    worker = WorkerProcess(dsn, tmp_path, "--import", TRACED)
    worker.env["KUBETASKS_TEST_SPANS"] = str(spans_file)
    with worker:
        for result in (doubled, failed, untraced):
            wait_state(store, result.id, timeout=20)
        worker.send(signal.SIGTERM)
        assert worker.wait() == 0
    spans = [json.loads(line) for line in spans_file.read_text().splitlines()]

    runs = {s["attributes"]["kubetasks.task.id"]: s for s in spans if s["name"].startswith("run ")}
    request_context = request.get_span_context()
    run = runs[int(doubled.id)]
    assert (run["trace_id"], run["parent_id"]) == (request_context.trace_id, request_context.span_id)
    assert run["kind"] == "CONSUMER"
    assert run["attributes"] | {} == {
        "messaging.system": "kubetasks", "messaging.operation.type": "process",
        "messaging.destination.name": "default", "messaging.message.id": doubled.id,
        "kubetasks.task.name": traced_double.name, "kubetasks.task.id": int(doubled.id),
        "kubetasks.queue": "default", "kubetasks.attempt": 1, "kubetasks.outcome": "succeeded"}
    [inside] = [s for s in spans if s["name"] == "inside the task" and s["parent_id"] == run["span_id"]]
    assert inside["trace_id"] == request_context.trace_id

    failure = runs[int(failed.id)]
    assert failure["parent_id"] == request_context.span_id
    assert (failure["status"], failure["attributes"]["kubetasks.outcome"]) == ("ERROR", "failed")
    assert runs[int(untraced.id)]["parent_id"] is None  # a root of its own


def test_without_opentelemetry_nothing_is_traced_and_nothing_fails(
        dsn: str, tmp_path: Path) -> None:
    """opentelemetry made unimportable, as when the extra is not installed."""
    script = f"""
import sys
sys.modules["opentelemetry"] = None  # any import of it raises ImportError
from kubetasks import configure, task, tracing
from kubetasks.worker.attempt import prepare, run_sync, Succeeded
assert not tracing.ENABLED and tracing.current_context_json() is None
configure(database_url={dsn!r})

@task
def add(a: int, b: int) -> int:
    return a + b

result = add.enqueue(2, 3)
from kubetasks.config import get_backend
store = get_backend().store
record = store.get(result.id)
assert record.trace_context is None
outcome = run_sync(prepare(record))
assert isinstance(outcome, Succeeded) and outcome.return_json == "5", outcome
print("ok")
"""
    done: Any = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                               cwd=tmp_path, timeout=60)
    assert (done.returncode, done.stdout.strip()) == (0, "ok"), done.stderr
