"""Where the end-to-end tier runs: a real node here, or a kind cluster where Docker exists.

``KUBETASKS_E2E_PROVIDER`` chooses: ``node`` (the default) runs ``localcluster.stack`` on this
machine (control plane, scheduler, a real containerd + kubelet node); ``kind`` uses the
cluster that ``tests/e2e/kind.sh`` created (``KUBECONFIG``), with PostgreSQL in a pod. Both
give the scenarios the same ``Stack``: images on the node, the CRD, the operator installed by
``helm install charts/kubetasks``, and a database server.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from localcluster.controlplane import free_port
from localcluster.polling import wait_until
from localcluster.stack import OPERATOR_NAMESPACE, RELEASE, REPO, Stack

PROVIDERS = ("node", "kind")


def provider_name() -> str:
    name = os.environ.get("KUBETASKS_E2E_PROVIDER", "node")
    if name not in PROVIDERS:
        raise ValueError(f"KUBETASKS_E2E_PROVIDER={name!r}: expected one of {', '.join(PROVIDERS)}")
    return name


def kind_unavailable_reason() -> str | None:
    """Why the kind provider cannot run on this machine, or None."""
    if shutil.which("docker") is None or shutil.which("kind") is None:
        return ("kind needs a Docker engine and the kind CLI; this machine has no Docker"
                " (see tests/e2e/README.md)")
    if not os.environ.get("KUBECONFIG"):
        return "KUBECONFIG must point at the kind cluster (tests/e2e/kind.sh sets it)"
    return None


@contextmanager
def kind_cluster(workdir: Path, log: Callable[[str], None] = print) -> Iterator[Stack]:
    """The kind cluster of ``tests/e2e/kind.sh``: images loaded, PostgreSQL run in a pod and
    reached through ``kubectl port-forward``."""
    kubeconfig = Path(os.environ["KUBECONFIG"])
    helm = Path(shutil.which("helm") or "helm")
    port = free_port()
    cluster = Stack(
        kubeconfig=kubeconfig, helm=helm,
        admin_dsn=f"postgresql://postgres:e2e@127.0.0.1:{port}/postgres",
        pod_dsn=lambda name: f"postgresql://postgres:e2e@postgres.kubetasks-e2e.svc:5432/{name}",
        operator_values={"image": {"repository": "kubetasks/operator", "tag": "dev",
                                   "pullPolicy": "Never"}},
        logs=lambda: "", workdir=workdir,
        restart_database=lambda: _kind_restart_database(kubeconfig),
        kill_container=_kind_kill_container,
    )
    cluster.kubectl("apply", "-f", str(REPO / "tests" / "e2e" / "kind-postgres.yaml"))
    cluster.kubectl("rollout", "status", "-n", "kubetasks-e2e", "deployment/postgres", "--timeout=180s")
    forward = subprocess.Popen(
        ["kubectl", f"--kubeconfig={kubeconfig}", "port-forward", "-n", "kubetasks-e2e",
         "svc/postgres", f"{port}:5432"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: psycopg.connect(cluster.admin_dsn, connect_timeout=2).close() is None,
                   timeout=60, what="PostgreSQL through port-forward")
        cluster.kubectl("apply", "-f", str(REPO / "crds" / "taskqueue.yaml"))
        cluster.install_operator()
        yield cluster
    finally:
        forward.terminate()
        cluster.helm_run("uninstall", RELEASE, "--namespace", OPERATOR_NAMESPACE)


def _kind_restart_database(kubeconfig: Path) -> None:
    """Stop PostgreSQL in its pod (fast); the kubelet starts the container again on its emptyDir."""
    subprocess.run(["kubectl", f"--kubeconfig={kubeconfig}", "exec", "-n", "kubetasks-e2e",
                    "deploy/postgres", "--", "su", "postgres", "-c",
                    "pg_ctl -D /var/lib/postgresql/data -m fast stop"], check=False, timeout=60)


def _kind_kill_container(container_id: str) -> bool:
    node = os.environ.get("KIND_CLUSTER_NAME", "kubetasks-e2e") + "-control-plane"
    result = subprocess.run(["docker", "exec", node, "ctr", "-n", "k8s.io", "tasks", "kill",
                             "--signal", "SIGKILL", container_id], check=False, timeout=60)
    return result.returncode == 0
