"""TaskQueues of the example app's workers, and the task states of a test's database."""

from __future__ import annotations

from typing import Any

import psycopg
import yaml
from localcluster.stack import APP_IMAGE, Stack

from .conftest import Database


def apply_taskqueue(e2e: Stack, namespace: str, name: str, *, image: str = APP_IMAGE,
                    pull_policy: str = "IfNotPresent", min_replicas: int = 0, max_replicas: int = 3,
                    concurrency: int = 2, grace: int = 15, memory: str = "256Mi", max_lost: int = 3,
                    **scaling: Any) -> None:
    """``kubectl apply`` a TaskQueue of the example app's workers, tuned for short tests."""
    manifest = {
        "apiVersion": "kubetasks.io/v1alpha1", "kind": "TaskQueue",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "queueName": name,
            "database": {"secretRef": {"name": "db", "key": "url"}},
            "worker": {
                "image": image, "imagePullPolicy": pull_policy,
                "args": ["--import", "app.tasks", "--poll-interval", "1"],
                "concurrency": concurrency, "gracePeriodSeconds": grace,
                "resources": {"requests": {"cpu": "10m", "memory": "64Mi"}, "limits": {"memory": memory}},
            },
            "scaling": {"minReplicas": min_replicas, "maxReplicas": max_replicas,
                        "pollIntervalSeconds": 0.5, "scaleDownDelaySeconds": 3,
                        "scaleToZeroDelaySeconds": 5, "podStartupSeconds": 3,
                        "backlogDrainSeconds": 60, **scaling},
            "lostTasks": {"maxLost": max_lost, "heartbeatTimeoutSeconds": 30, "sweepIntervalSeconds": 2},
        },
    }
    e2e.kubectl("apply", "-f", "-", input=yaml.safe_dump(manifest))


def states(db: Database) -> dict[str, int]:
    with psycopg.connect(db.local) as conn:
        rows = conn.execute("SELECT state::text, count(*) FROM kubetasks_tasks GROUP BY state").fetchall()
    return {state: int(count) for state, count in rows}
