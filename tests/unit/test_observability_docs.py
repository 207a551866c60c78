"""docs/observability.md names every series and every task log event the code writes, so
that what a user reads there is what Prometheus and the logs show."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOC = (REPO / "docs" / "observability.md").read_text()
SOURCES = [*(REPO / "src" / "kubetasks").rglob("*.py"), *(REPO / "operator").rglob("*.py")]
METRIC = re.compile(r"\b(Counter|Gauge|Histogram|Summary)\(\s*\"(kubetasks_[a-z0-9_]+)\"")


def test_every_series_is_documented() -> None:
    names = {name + ("_total" if kind == "Counter" else "")
             for source in SOURCES for kind, name in METRIC.findall(source.read_text())}
    assert {"kubetasks_worker_slots_in_use", "kubetasks_operator_errors_total"} <= names
    assert sorted(n for n in names if f"`{n}`" not in DOC) == []


def test_every_task_event_is_documented() -> None:
    code = "".join(p.read_text() for p in (REPO / "src" / "kubetasks" / "worker").glob("*.py"))
    events = set(re.findall(r"\"(task\.[a-z_]+)\"", code))
    assert {"task.started", "task.succeeded", "task.failed", "task.retrying"} <= events
    assert sorted(e for e in events if f"| `{e}` |" not in DOC) == []
