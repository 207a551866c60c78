"""An argus-like Django project (examples/django_app) on the real node, switched from
django-tasks-db by its settings: its image is built FROM the worker image, its schema comes
from ``manage.py migrate`` in a pod, its workers are TaskQueue Deployments whose entry point is
``manage.py kubetasks_worker``, its tasks use the ORM and enqueue follow-ups on another queue,
and ``manage.py kubetasks_prune`` prunes them, in a pod."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import yaml
from localcluster.operator import Cluster
from localcluster.polling import wait_until
from localcluster.stack import DJANGO_APP_IMAGE, Stack

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]  # a cold image build takes minutes
DESTINATIONS = 4


@pytest.fixture
def blank_database(e2e: Stack, namespace: str) -> Iterator[str]:
    """A database with nothing in it (not even kubetasks' schema), and the Secret
    ``django-db`` with its URL as pods reach it; yields the URL as the test reaches it."""
    name = f"django_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(e2e.admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    e2e.kubectl("create", "secret", "generic", "django-db", "-n", namespace,
                f"--from-literal=url={e2e.pod_dsn(name)}")
    yield e2e.admin_dsn.rsplit("/", 1)[0] + f"/{name}"


DATABASE_URL = {"name": "DATABASE_URL",
                "valueFrom": {"secretKeyRef": {"name": "django-db", "key": "url"}}}


def run_pod(e2e: Stack, cluster: Cluster, namespace: str, name: str, *command: str) -> str:
    """Run ``python manage.py COMMAND...`` in a pod of the project's image; its log."""
    e2e.kubectl("apply", "-f", "-", input=yaml.safe_dump({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace},
        "spec": {"restartPolicy": "Never", "containers": [{
            "name": name, "image": DJANGO_APP_IMAGE, "imagePullPolicy": "Never",
            "command": ["python", "manage.py", *command], "env": [DATABASE_URL]}]}}))

    def ended() -> str | None:
        phase: str | None = cluster.core.read_namespaced_pod(name, namespace).status.phase
        return phase if phase in ("Succeeded", "Failed") else None

    phase = wait_until(ended, timeout=180, what=f"pod {name} to end")
    log = e2e.kubectl("logs", name, "-n", namespace).stdout
    assert phase == "Succeeded", log
    return log


def django_taskqueue(e2e: Stack, namespace: str, queue: str) -> None:
    """A TaskQueue whose workers are the project's image, started by the operator as
    ``manage.py kubetasks_worker --queue QUEUE ...``, with no --import (the apps' tasks
    modules) and no database URL of its own (Django's DATABASES, from DATABASE_URL)."""
    e2e.kubectl("apply", "-f", "-", input=yaml.safe_dump({
        "apiVersion": "kubetasks.io/v1alpha1", "kind": "TaskQueue",
        "metadata": {"name": queue, "namespace": namespace},
        "spec": {
            "queueName": queue,
            "database": {"secretRef": {"name": "django-db", "key": "url"}},
            "worker": {
                "image": DJANGO_APP_IMAGE, "imagePullPolicy": "Never",
                "args": ["--poll-interval", "1"], "env": [DATABASE_URL],
                "concurrency": 2, "gracePeriodSeconds": 15,
                "resources": {"requests": {"cpu": "10m", "memory": "64Mi"},
                              "limits": {"memory": "384Mi"}},
            },
            "scaling": {"minReplicas": 0, "maxReplicas": 2, "pollIntervalSeconds": 0.5,
                        "scaleDownDelaySeconds": 3, "scaleToZeroDelaySeconds": 5,
                        "podStartupSeconds": 3, "backlogDrainSeconds": 60},
        },
    }))


def rows(url: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql).fetchall()


def test_argus_like_project_runs_on_the_node_by_settings_alone(
        e2e: Stack, namespace: str, cluster: Cluster, blank_database: str) -> None:
    migrated = run_pod(e2e, cluster, namespace, "migrate", "migrate", "--noinput")
    assert "Applying kubetasks.0001_initial... OK" in migrated
    assert rows(blank_database, "SELECT count(*) FROM kubetasks_migrations") == [
        (len(rows(blank_database, "SELECT 1 FROM django_migrations WHERE app = 'kubetasks'")),)]

    for queue in ("default", "notifications"):
        django_taskqueue(e2e, namespace, queue)
    opened = run_pod(e2e, cluster, namespace, "open-incident", "open_incident", "disk full",
                     "--destinations", str(DESTINATIONS))
    assert "incident 1 task" in opened

    def notified() -> bool:
        sent = rows(blank_database, "SELECT count(*) FROM incidents_notification")[0][0]
        return bool(sent == DESTINATIONS)

    wait_until(notified, timeout=240, interval=1, what=f"{DESTINATIONS} notifications")
    tasks = rows(blank_database, "SELECT queue_name, task_name, state::text, worker_pod "
                                 "FROM kubetasks_tasks ORDER BY id")
    assert [(q, n.rsplit(".", 1)[-1], s) for q, n, s, _ in tasks] == [
        ("default", "open_incident", "SUCCESSFUL"),
        *[("notifications", "send_notification", "SUCCESSFUL")] * DESTINATIONS]
    # Each queue's tasks ran in its own Deployment's pods.
    assert tasks[0][3].startswith("default-worker-")
    assert all(pod.startswith("notifications-worker-") for *_, pod in tasks[1:])

    dry = run_pod(e2e, cluster, namespace, "prune-dry", "kubetasks_prune", "--min-age-days",
                  "0", "--dry-run")
    assert f"would delete {DESTINATIONS + 1} finished tasks (dry run)" in dry
    pruned = run_pod(e2e, cluster, namespace, "prune", "kubetasks_prune", "--min-age-days", "0")
    assert f"deleted {DESTINATIONS + 1} finished tasks" in pruned
    assert rows(blank_database, "SELECT count(*) FROM kubetasks_tasks") == [(0,)]
