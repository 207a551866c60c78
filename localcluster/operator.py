"""What the operator tests share: the CRD, a database per test, the operator as a process,
TaskQueue manifests, and readers of the objects the operator writes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import kubernetes
import psycopg
from kubernetes.client.exceptions import ApiException

from kubetasks.backends import PostgresBackend
from kubetasks.migrations import migrate
from kubetasks.store import Store
from localcluster.postgres import LocalPostgres, free_port

from .controlplane import ControlPlane

REPO = Path(__file__).resolve().parents[1]
WORKER_IMAGE = "kubetasks-worker:test"
GROUP, VERSION, PLURAL = "kubetasks.io", "v1alpha1", "taskqueues"


def new_database(server: LocalPostgres, name: str) -> str:
    admin = server.dsn
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    dsn = admin.rsplit("/", 1)[0] + f"/{name}"
    migrate(dsn)
    return dsn


def drop_database(server: LocalPostgres, name: str) -> None:
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def taskqueue(name: str, queue: str, *, secret: str = "db", min_replicas: int = 0,
              max_replicas: int = 4, concurrency: int = 2, image: str = WORKER_IMAGE,
              **scaling: Any) -> dict[str, Any]:
    """A TaskQueue whose workers run localcluster.sample_tasks, tuned for short tests."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "TaskQueue",
        "metadata": {"name": name},
        "spec": {
            "queueName": queue,
            "database": {"secretRef": {"name": secret}},
            "worker": {
                "image": image,
                "args": ["--import", "localcluster.sample_tasks", "--poll-interval", "1",
                         "--heartbeat-interval", "1"],
                "concurrency": concurrency,
                "gracePeriodSeconds": 4,
                "env": [
                    {"name": "PYTHONPATH", "value": f"{REPO}{os.pathsep}{REPO / 'src'}"},
                    # Pods share the host network here: each listens on its own pod IP.
                    {"name": "KUBETASKS_HEALTH_HOST",
                     "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                ],
            },
            "scaling": {"minReplicas": min_replicas, "maxReplicas": max_replicas,
                        "pollIntervalSeconds": 0.5, "scaleDownDelaySeconds": 3,
                        "scaleToZeroDelaySeconds": 4, "podStartupSeconds": 1,
                        "backlogDrainSeconds": 60, **scaling},
            "lostTasks": {"maxLost": 3, "heartbeatTimeoutSeconds": 30, "sweepIntervalSeconds": 2},
        },
    }


class Cluster:
    """Typed access to what the tests read and write."""

    def __init__(self, api_client: kubernetes.client.ApiClient, namespace: str) -> None:
        self.namespace = namespace
        self.core = kubernetes.client.CoreV1Api(api_client)
        self.apps = kubernetes.client.AppsV1Api(api_client)
        self.custom = kubernetes.client.CustomObjectsApi(api_client)

    def create_secret(self, name: str, url: str) -> None:
        self.core.create_namespaced_secret(self.namespace, {
            "metadata": {"name": name}, "stringData": {"url": url}})

    def create_taskqueue(self, body: dict[str, Any]) -> None:
        self.custom.create_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, body)

    def taskqueue(self, name: str) -> dict[str, Any]:
        return dict(self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name))

    def status(self, name: str) -> dict[str, Any]:
        return dict(self.taskqueue(name).get("status") or {})

    def condition(self, name: str, kind: str) -> dict[str, Any] | None:
        for cond in self.status(name).get("conditions") or []:
            if cond["type"] == kind:
                return dict(cond)
        return None

    def replicas(self, taskqueue: str) -> int | None:
        try:
            deployment = self.apps.read_namespaced_deployment(f"{taskqueue}-worker", self.namespace)
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        return int(deployment.spec.replicas or 0)

    def deployment(self, taskqueue: str) -> dict[str, Any]:
        response = self.apps.read_namespaced_deployment(f"{taskqueue}-worker", self.namespace,
                                                        _preload_content=False)
        return dict(json.loads(response.data))

    def pods(self, taskqueue: str) -> list[dict[str, Any]]:
        response = self.core.list_namespaced_pod(
            self.namespace, label_selector=f"kubetasks.io/taskqueue={taskqueue}",
            _preload_content=False)
        return list(json.loads(response.data)["items"])

    def running_pods(self, taskqueue: str) -> list[dict[str, Any]]:
        return [p for p in self.pods(taskqueue) if p.get("status", {}).get("phase") == "Running"
                and not p["metadata"].get("deletionTimestamp")]

    def events(self, reason: str | None = None) -> list[dict[str, Any]]:
        response = self.core.list_namespaced_event(self.namespace, _preload_content=False)
        items = json.loads(response.data)["items"]
        return [e for e in items if reason is None or e.get("reason") == reason]


class OperatorProcess:
    """``kubetasks-operator`` watching one namespace, as the Dockerfile runs it."""

    def __init__(self, control_plane: ControlPlane, namespace: str, log_dir: Path) -> None:
        self.env = {**os.environ, "KUBECONFIG": str(control_plane.kubeconfig),
                    "KUBETASKS_NAMESPACES": namespace,
                    "KUBETASKS_OPERATOR_PORT": str(free_port()),
                    "KUBETASKS_METRICS_PORT": str(free_port()),
                    "KUBETASKS_LOG_LEVEL": "INFO", "PYTHONUNBUFFERED": "1"}
        self.log_path = log_dir / "operator.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = shutil.which("kubetasks-operator")
        assert command, "kubetasks-operator is not installed (pip install -e '.[operator]')"
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen([command], env=self.env, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)

    def kill(self) -> None:
        """SIGKILL: the operator gets no chance to clean up."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def metrics(self) -> str:
        import urllib.request

        port = self.env["KUBETASKS_METRICS_PORT"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            return str(response.read().decode())

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@contextmanager
def operator_running(control_plane: ControlPlane, namespace: str, log_dir: Path) -> Iterator[OperatorProcess]:
    operator = OperatorProcess(control_plane, namespace, log_dir)
    operator.start()
    try:
        yield operator
    finally:
        operator.stop()


def backend_for(dsn: str) -> PostgresBackend:
    return PostgresBackend(Store(dsn))


def sample(seconds: float, interval: float, read: Any) -> list[Any]:
    """``read()`` every ``interval`` for ``seconds``."""
    values, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        values.append(read())
        time.sleep(interval)
    return values
