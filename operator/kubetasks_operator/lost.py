"""When has a worker pod's process died? Pure functions over pod objects and events.

Lost-task signal 1 of DESIGN.md: the pod was deleted (its process is gone once the object
is), failed or was evicted, or its worker container restarted (OOMKilled, liveness). The
tasks of a restarted container are those claimed before the new container started.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kubetasks_operator.objects import WORKER_CONTAINER


@dataclass(frozen=True, slots=True)
class PodLoss:
    pod_uid: str
    pod_name: str
    reason: str
    claimed_before: datetime | None = None  # None: every task the pod instance held


def worker_status(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    for status in pod.get("status", {}).get("containerStatuses") or []:
        if status.get("name") == WORKER_CONTAINER:
            return dict(status)
    return {}


def restart_count(pod: Mapping[str, Any]) -> int:
    return int(worker_status(pod).get("restartCount", 0))


def _parse_time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def restart_time(pod: Mapping[str, Any]) -> datetime | None:
    """When the current worker container started (or the last one ended, while it waits)."""
    status = worker_status(pod)
    running = (status.get("state") or {}).get("running") or {}
    if running.get("startedAt"):
        return _parse_time(running["startedAt"])
    terminated = (status.get("lastState") or {}).get("terminated") or {}
    return _parse_time(terminated.get("finishedAt"))


def pod_loss(event_type: str | None, pod: Mapping[str, Any],
             previous_restarts: int | None) -> PodLoss | None:
    """The loss this pod event reveals, if any. ``previous_restarts`` is the worker container's
    restart count when this pod was last seen (None if never seen)."""
    meta = pod.get("metadata", {})
    uid, name = str(meta.get("uid", "")), str(meta.get("name", ""))
    status = pod.get("status", {})
    if event_type == "DELETED":
        return PodLoss(uid, name, f"pod {name} was deleted")
    phase = status.get("phase")
    if phase in ("Failed", "Succeeded"):
        why = status.get("reason") or phase
        return PodLoss(uid, name, f"pod {name} ended {phase} ({why})")
    restarts = restart_count(pod)
    if previous_restarts is not None and restarts > previous_restarts:
        terminated = (worker_status(pod).get("lastState") or {}).get("terminated") or {}
        why = terminated.get("reason") or f"exit code {terminated.get('exitCode', '?')}"
        return PodLoss(uid, name, f"worker container of pod {name} restarted ({why})",
                       claimed_before=restart_time(pod))
    return None
