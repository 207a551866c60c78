"""OpenTelemetry tracing of tasks, with the ``otel`` extra (``pip install 'kubetasks[otel]'``).

At enqueue, the W3C trace context of the caller's current span (``traceparent``, and
``tracestate`` when there is one) is stored with the task; the worker's span for each attempt
is its child, so a task's run shows in the trace of the request that enqueued it, and spans the
task makes are children of the run. Without opentelemetry installed (``ENABLED`` is False)
nothing is stored, nothing is traced, and nothing else changes.

The application configures the SDK (a tracer provider and its exporter) as for any library
instrumented with the OpenTelemetry API; kubetasks only uses the API.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

try:
    from opentelemetry import propagate, trace
    from opentelemetry.trace import ProxyTracerProvider, Span, SpanKind, Status, StatusCode
except ImportError:  # the extra is not installed
    ENABLED = False
else:
    ENABLED = True

__all__ = ["ENABLED", "Span", "active", "attempt_span", "current_context_json", "outcome",
           "parent_of"]

TRACER = "kubetasks"
_tracer: tuple[Any, Any] | None = None
"""The tracer provider last used and its kubetasks tracer, made once per provider."""


RECHECK_SECONDS = 1.0
_provider_set: tuple[float, bool] = (-math.inf, False)
"""When it was last looked up whether the application set a tracer provider, and the answer."""


def active() -> bool:
    """Whether runs are traced: opentelemetry is installed and the application has set a tracer
    provider. Until it does, every span would be a no-op, at a cost (ten times a trivial task's
    run), so none is made. Looking the provider up costs microseconds too: a provider, once
    set, stays (OpenTelemetry refuses to replace it), and its absence is looked up again at
    most every ``RECHECK_SECONDS``."""
    global _provider_set
    if not ENABLED:
        return False
    checked_at, is_set = _provider_set
    if is_set:
        return True
    now = time.monotonic()
    if now - checked_at < RECHECK_SECONDS:
        return False
    is_set = not isinstance(trace.get_tracer_provider(), ProxyTracerProvider)
    _provider_set = (now, is_set)
    return is_set


def _get_tracer() -> Any:
    global _tracer
    provider = trace.get_tracer_provider()
    if _tracer is None or _tracer[0] is not provider:
        _tracer = (provider, provider.get_tracer(TRACER))
    return _tracer[1]


def current_context_json() -> str | None:
    """The trace context of the current span as a JSON object, to store with a task; None
    without opentelemetry or outside any span."""
    if not ENABLED or not trace.get_current_span().get_span_context().is_valid:
        return None
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return json.dumps(carrier) if carrier else None


@contextmanager
def attempt_span(*, task_name: str, task_id: int, queue_name: str, attempt: int,
                 parent: Mapping[str, str] | None) -> Iterator[Span]:
    """The span of one attempt, current while the task runs: a child of the stored context
    ``parent`` when there is one, else a root. ``outcome()`` sets how it ended."""
    context = propagate.extract(dict(parent)) if parent else None
    with _get_tracer().start_as_current_span(
            f"run {task_name}", context=context, kind=SpanKind.CONSUMER, attributes={
                "messaging.system": "kubetasks", "messaging.operation.type": "process",
                "messaging.destination.name": queue_name, "messaging.message.id": str(task_id),
                "kubetasks.task.name": task_name, "kubetasks.task.id": task_id,
                "kubetasks.queue": queue_name, "kubetasks.attempt": attempt},
            record_exception=False, set_status_on_exception=False) as span:
        yield span


def outcome(span: Span, name: str, error: BaseException | None = None) -> None:
    """``kubetasks.outcome`` (succeeded, failed, timeout, cancelled), and the error if any."""
    span.set_attribute("kubetasks.outcome", name)
    if error is not None:
        span.record_exception(error)
        span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))


def parent_of(value: Any) -> Mapping[str, str] | None:
    """A stored trace context as a carrier, or None for anything else (a row written by hand)."""
    if isinstance(value, dict) and all(isinstance(v, str) for v in value.values()):
        return value
    return None
