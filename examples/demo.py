"""kubetasks end to end on this machine: real images on a real node, the operator from its Helm
chart, and worker pods that scale from zero on backlog and deadlines, then back to zero.

    bash examples/demo.sh          # installs what is missing, then runs this

``localcluster.stack`` builds the operator, worker and example-app images with buildah,
starts the upstream API server, controller manager and scheduler on loopback, a real node
(containerd + kubelet) with the images imported, and PostgreSQL on the node's bridge; then
``helm install charts/kubetasks``. The demo applies a TaskQueue of the example app's workers,
enqueues through the client library, and shows backlog, replicas and completions live until
the queue is back at zero. Everything it changed on the machine is put back when it ends.
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import yaml
from localcluster.stack import APP_IMAGE, Stack, real_node_stack

from kubetasks.backends import PostgresBackend
from kubetasks.store import Store

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `app.tasks`, as the image names them
from app.tasks import make_thumbnail, send_digest

NAMESPACE = "demo"


def taskqueue_manifest() -> dict[str, Any]:
    return {
        "apiVersion": "kubetasks.io/v1alpha1", "kind": "TaskQueue",
        "metadata": {"name": "media", "namespace": NAMESPACE},
        "spec": {
            "queueName": "media",
            "database": {"secretRef": {"name": "kubetasks-db", "key": "url"}},
            "worker": {
                "image": APP_IMAGE, "imagePullPolicy": "IfNotPresent",
                "args": ["--import", "app.tasks"], "concurrency": 8, "gracePeriodSeconds": 10,
                "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
            },
            "scaling": {"minReplicas": 0, "maxReplicas": 4, "scaleDownDelaySeconds": 5,
                        "scaleToZeroDelaySeconds": 10, "podStartupSeconds": 5,
                        "pollIntervalSeconds": 0.5, "backlogDrainSeconds": 20},
        },
    }


def counts(dsn: str) -> dict[str, int]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT state::text, count(*) FROM kubetasks_tasks GROUP BY state").fetchall()
    return {state: int(n) for state, n in rows}


def live_line(stack: Stack, dsn: str, started: float) -> tuple[str, dict[str, Any], dict[str, int]]:
    tq = yaml.safe_load(stack.kubectl("get", "tq", "media", "-n", NAMESPACE, "-o", "yaml").stdout)
    status = tq.get("status", {})
    pods = stack.kubectl("get", "pods", "-n", NAMESPACE, "-l", "kubetasks.io/taskqueue=media",
                         "--field-selector=status.phase=Running", "-o", "name").stdout.split()
    done = counts(dsn)
    line = (f"t={time.monotonic() - started:5.1f}s  backlog={status.get('backlog', '-'):>4}  "
            f"running={status.get('running', '-'):>3}  replicas={status.get('replicas', '-')}"
            f"  pods={len(pods)}  done={done.get('SUCCESSFUL', 0):>4}  | {status.get('reason', '')[:80]}")
    return line, status, done


def drive(stack: Stack, thumbnails: int) -> int:
    local, pods_url = stack.new_database()
    stack.kubectl("create", "namespace", NAMESPACE)
    stack.kubectl("create", "secret", "generic", "kubetasks-db", "-n", NAMESPACE,
                  f"--from-literal=url={pods_url}")
    stack.kubectl("apply", "-f", "-", input=yaml.safe_dump(taskqueue_manifest()))
    print("\n$ kubectl get tq -n demo\n" + stack.kubectl("get", "tq", "-n", NAMESPACE).stdout)
    backend = PostgresBackend(Store(local))
    started = time.monotonic()
    make_thumbnail.using(backend=backend).enqueue_many([(i,) for i in range(thumbnails)])
    digests = send_digest.using(backend=backend, context={"tenant": "acme"}, priority=5,
                                expected_at=datetime.now(UTC) + timedelta(seconds=60))
    batches = digests.enqueue_batched(list(range(1000)), batch_size=100)
    total = thumbnails + len(batches)
    print(f"enqueued {thumbnails} thumbnails and {len(batches)} digests (deadline in 60s)\n")
    while True:
        line, status, done = live_line(stack, local, started)
        print(line, flush=True)
        if done.get("SUCCESSFUL", 0) + done.get("FAILED", 0) == total and status.get("replicas") == 0:
            break
        time.sleep(1)
    with psycopg.connect(local) as conn:
        pods = conn.execute("SELECT count(DISTINCT worker_pod) FROM kubetasks_tasks").fetchone()
    print(f"\nall {total} tasks: {done.get('SUCCESSFUL', 0)} SUCCESSFUL, run by {pods[0] if pods else 0}"
          f" worker pods; back at zero replicas after {time.monotonic() - started:.1f}s")
    print("\n$ kubectl get events -n demo --field-selector reason=Scaled\n" + stack.kubectl(
        "get", "events", "-n", NAMESPACE, "--field-selector", "reason=Scaled",
        "-o", "custom-columns=MESSAGE:.message").stdout)
    backend.close()
    return 0 if done.get("SUCCESSFUL", 0) == total else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bash examples/demo.sh", description=__doc__.splitlines()[0])
    parser.add_argument("--thumbnails", type=int, default=1200, help="how many tasks to enqueue (1200)")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="kubetasks-demo-"))
    print(f"kubetasks demo; logs in {workdir}")
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stopped either way, the host is put back
    with real_node_stack(workdir) as stack:
        return drive(stack, args.thumbnails)


if __name__ == "__main__":
    sys.exit(main())
