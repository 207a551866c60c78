"""kubetasks end to end on this machine: PostgreSQL, a Kubernetes control plane, the operator,
and worker pods that scale from zero on backlog and deadlines, then back to zero.

    bash examples/demo.sh          # installs what is missing, then runs this

There is no Docker here, so the control plane and the local kubelet of ``tests/cluster`` stand
in for a cluster: the API server and controller-manager are the real ones, and each worker
pod's container (``kubetasks worker --import examples.app.tasks``) runs as a local process.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.cluster.controlplane import ControlPlane
from tests.cluster.kubelet import IMAGE_ENTRYPOINTS, LocalKubelet
from tests.support.pgserver import LocalPostgres, free_port

from examples.app.tasks import make_thumbnail, send_digest
from kubetasks import TaskResultStatus
from kubetasks.backends import PostgresBackend
from kubetasks.migrations import migrate
from kubetasks.store import Store

REPO = Path(__file__).resolve().parents[1]
NAMESPACE = "demo"


def taskqueue_manifest(secret: str) -> dict[str, Any]:
    return {
        "apiVersion": "kubetasks.io/v1alpha1", "kind": "TaskQueue",
        "metadata": {"name": "media", "namespace": NAMESPACE},
        "spec": {
            "queueName": "media",
            "database": {"secretRef": {"name": secret}},
            "worker": {
                "image": "kubetasks-worker:demo",
                "args": ["--import", "examples.app.tasks"],
                "concurrency": 4,
                "gracePeriodSeconds": 10,
                "env": [{"name": "PYTHONPATH", "value": f"{REPO}:{REPO / 'src'}"},
                        {"name": "KUBETASKS_HEALTH_HOST",
                         "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
            },
            "scaling": {"minReplicas": 0, "maxReplicas": 4, "scaleDownDelaySeconds": 5,
                        "scaleToZeroDelaySeconds": 5, "podStartupSeconds": 2,
                        "pollIntervalSeconds": 0.5, "backlogDrainSeconds": 20},
        },
    }


def kubectl(cluster: ControlPlane, *args: str, stdin: str | None = None) -> str:
    return cluster.kubectl(*args, input=stdin).stdout


def status_line(cluster: ControlPlane, started: float) -> tuple[str, dict[str, Any]]:
    tq = json.loads(kubectl(cluster, "get", "tq", "media", "-n", NAMESPACE, "-o", "json"))
    s = tq.get("status", {})
    line = (f"t={time.monotonic() - started:5.1f}s  backlog={s.get('backlog', '-'):>4}  "
            f"running={s.get('running', '-'):>3}  replicas={s.get('replicas', '-')}  "
            f"| {s.get('reason', '')[:110]}")
    return line, s


def run_operator(cluster: ControlPlane, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig), "KUBETASKS_NAMESPACES": NAMESPACE,
           "KUBETASKS_OPERATOR_PORT": str(free_port()), "KUBETASKS_METRICS_PORT": str(free_port())}
    command = shutil.which("kubetasks-operator") or "kubetasks-operator"
    return subprocess.Popen([command], env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)


def main() -> int:
    workdir = Path(tempfile.mkdtemp(prefix="kubetasks-demo-"))
    print(f"kubetasks demo; logs in {workdir}")
    with LocalPostgres() as postgres, ControlPlane.start(workdir=workdir / "cluster") as cluster:
        migrate(postgres.dsn)
        print(f"PostgreSQL on port {postgres.port}, migrated; Kubernetes "
              f"{cluster.binaries.kubernetes_version} at {cluster.server}")
        with LocalKubelet(cluster.api_client(), log_dir=workdir / "pods",
                          entrypoints=IMAGE_ENTRYPOINTS) as kubelet:
            kubelet.add_entrypoint("kubetasks-worker", ["kubetasks", "worker"])
            kubectl(cluster, "apply", "-f", str(REPO / "crds"))
            kubectl(cluster, "wait", "--for=condition=Established", "crd/taskqueues.kubetasks.io")
            kubectl(cluster, "create", "namespace", NAMESPACE)
            kubectl(cluster, "create", "secret", "generic", "kubetasks-db", "-n", NAMESPACE,
                    f"--from-literal=url={postgres.dsn}")
            operator = run_operator(cluster, workdir / "operator.log")
            try:
                return drive(cluster, postgres)
            finally:
                operator.terminate()
                operator.wait(timeout=30)
                kubectl(cluster, "delete", "namespace", NAMESPACE, "--wait=false")


def drive(cluster: ControlPlane, postgres: LocalPostgres) -> int:
    kubectl(cluster, "apply", "-f", "-", stdin=json.dumps(taskqueue_manifest("kubetasks-db")))
    print("\n$ kubectl get tq -n demo\n" + kubectl(cluster, "get", "tq", "-n", NAMESPACE))
    backend = PostgresBackend(Store(postgres.dsn))
    started = time.monotonic()
    thumbnails = make_thumbnail.using(backend=backend).enqueue_many([(i,) for i in range(1200)])
    digests = send_digest.using(
        backend=backend, context={"tenant": "acme"}, priority=5,
        expected_at=datetime.now(UTC) + timedelta(seconds=30),
    ).enqueue_batched(list(range(1000)), batch_size=100)
    print(f"enqueued {len(thumbnails)} thumbnails and {len(digests)} digests (deadline in 30s)\n")
    results = thumbnails + digests
    while True:
        line, status = status_line(cluster, started)
        print(line, flush=True)
        done = sum(backend.get_result(r.id).is_finished for r in results[::10])
        if done == len(results[::10]) and status.get("running") == 0 and status.get("backlog") == 0:
            break
        time.sleep(1)
    finished = [backend.get_result(r.id) for r in results]
    pods = {r.return_value["pod"] for r in finished if r.task_name.endswith("make_thumbnail")}
    print(f"\nall {len(finished)} tasks: "
          f"{sum(r.status == TaskResultStatus.SUCCESSFUL for r in finished)} SUCCESSFUL, "
          f"run by {len(pods)} pods, in {time.monotonic() - started:.1f}s")
    print(f"a digest said: {finished[-1].return_value!r}")
    print("waiting for the idle delay to scale to zero ...")
    while status_line(cluster, started)[1].get("replicas") != 0:
        time.sleep(1)
    print(status_line(cluster, started)[0])
    print("\n$ kubectl get events -n demo --field-selector reason=Scaled\n" + kubectl(
        cluster, "get", "events", "-n", NAMESPACE, "--field-selector", "reason=Scaled",
        "-o", "custom-columns=MESSAGE:.message"))
    backend.close()
    return 0 if all(r.status == TaskResultStatus.SUCCESSFUL for r in finished) else 1


if __name__ == "__main__":
    sys.exit(main())
