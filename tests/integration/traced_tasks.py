"""Tasks run by a worker whose OpenTelemetry SDK keeps spans in memory: imported by a worker
with ``$KUBETASKS_TEST_SPANS`` set, it writes them there (JSON lines) when the worker exits."""

from __future__ import annotations

import atexit
import json
import os

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from kubetasks import task

SPANS = os.environ.get("KUBETASKS_TEST_SPANS")
exporter = InMemorySpanExporter()
if SPANS:  # the worker's process; the test's own process configures its SDK itself
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)


@task
def traced_double(n: int) -> int:
    with trace.get_tracer(__name__).start_as_current_span("inside the task"):
        return n * 2


@task
async def traced_fail() -> None:
    raise ValueError("no luck")


def _write_spans(path: str) -> None:
    with open(path, "w", encoding="utf-8") as out:
        for span in exporter.get_finished_spans():
            out.write(json.dumps({
                "name": span.name, "trace_id": span.context.trace_id,
                "span_id": span.context.span_id,
                "parent_id": span.parent.span_id if span.parent else None,
                "kind": span.kind.name, "status": span.status.status_code.name,
                "attributes": dict(span.attributes or {})}) + "\n")


if SPANS:
    atexit.register(_write_spans, SPANS)
