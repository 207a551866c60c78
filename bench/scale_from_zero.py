"""How soon after the first enqueue does the operator scale a queue's Deployment up from zero?

Runs PostgreSQL, the loopback control plane of localcluster and the operator here, then
repeats: enqueue one task into an empty queue whose Deployment is at 0, and time until the
Deployment's spec.replicas is 1 (read every 5 ms). The task is then cancelled so the queue
drains back to zero. Once with the operator LISTENing (the default) and once polling only
(KUBETASKS_OPERATOR_LISTEN=false), both with pollIntervalSeconds 2.

    python -m bench.scale_from_zero [--trials 20]     # results: bench/RESULTS-scaling.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import kubernetes
from localcluster.controlplane import ControlPlane
from localcluster.operator import REPO, OperatorProcess, taskqueue
from localcluster.postgres import LocalPostgres
from localcluster.sample_tasks import short

from kubetasks.migrations import migrate
from kubetasks.store import Store

NAMESPACE = "bench"


def replicas(apps: kubernetes.client.AppsV1Api) -> int:
    return int(apps.read_namespaced_deployment("zero-worker", NAMESPACE).spec.replicas or 0)


def wait_for(apps: kubernetes.client.AppsV1Api, value: int, timeout: float = 60) -> float:
    start = time.monotonic()
    while replicas(apps) != value:
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"replicas never reached {value}")
        time.sleep(0.005)
    return time.monotonic() - start


def trials(cluster: ControlPlane, dsn: str, *, listen: bool, count: int, workdir: Path) -> list[float]:
    operator = OperatorProcess(cluster, NAMESPACE, workdir)
    operator.env["KUBETASKS_OPERATOR_LISTEN"] = "true" if listen else "false"
    operator.start()
    apps = kubernetes.client.AppsV1Api(cluster.api_client())
    store = Store(dsn)
    backend_task = short.using(queue_name="zero")
    from kubetasks.backends import PostgresBackend

    backend = PostgresBackend(store)
    seconds = []
    try:
        time.sleep(3)  # the operator is up and has seen the TaskQueue
        wait_for(apps, 0)
        for _ in range(count):
            result = backend_task.using(backend=backend).enqueue(1)
            seconds.append(wait_for(apps, 1))
            store.cancel(result.id)
            wait_for(apps, 0)
    finally:
        operator.stop()
        store.close()
    return seconds


def summary(name: str, values: list[float]) -> str:
    ms = sorted(v * 1000 for v in values)
    p90 = ms[max(0, int(len(ms) * 0.9) - 1)]
    return (f"| {name} | {len(ms)} | {statistics.median(ms):.0f} | {p90:.0f} | {ms[-1]:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=20)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="kubetasks-bench-"))
    with LocalPostgres() as postgres, ControlPlane.start(workdir=workdir / "cluster") as cluster:
        migrate(postgres.dsn)
        cluster.kubectl("apply", "-f", str(REPO / "crds"))
        cluster.kubectl("wait", "--for=condition=Established", "crd/taskqueues.kubetasks.io")
        cluster.kubectl("create", "namespace", NAMESPACE)
        cluster.kubectl("create", "secret", "generic", "db", "-n", NAMESPACE,
                        f"--from-literal=url={postgres.dsn}")
        body = taskqueue("zero", "zero", image="not-on-this-node:1", pollIntervalSeconds=2,
                         scaleDownDelaySeconds=0, scaleToZeroDelaySeconds=0)
        body["metadata"]["namespace"] = NAMESPACE
        cluster.kubectl("apply", "-f", "-", input=json.dumps(body))
        listening = trials(cluster, postgres.dsn, listen=True, count=args.trials, workdir=workdir)
        polling = trials(cluster, postgres.dsn, listen=False, count=max(5, args.trials // 2),
                         workdir=workdir)
    lines = [
        "# Scale from zero: enqueue to Deployment replicas 0 -> 1",
        "",
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {os.cpu_count()} cores; "
        f"{platform.system()} {platform.release()}",
        "- the operator, PostgreSQL and the API server on one machine (loopback);"
        " pollIntervalSeconds 2; replicas read every 5 ms",
        "- reproduce: `python -m bench.scale_from_zero`",
        "",
        "| operator | trials | p50 ms | p90 ms | max ms |",
        "|---|---:|---:|---:|---:|",
        summary("LISTEN/NOTIFY (default)", listening),
        summary("polling only (KUBETASKS_OPERATOR_LISTEN=false)", polling),
        "",
        "With NOTIFY the time is one statistics read and one scale call after the commit;",
        "polling waits for the next tick, half the interval on average. KEDA's default",
        "polling interval is 30 s.",
    ]
    text = "\n".join(lines) + "\n"
    (REPO / "bench" / "RESULTS-scaling.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
