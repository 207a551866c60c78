"""The whole kubetasks stack on this machine: real images on a real node, the operator from
the chart, PostgreSQL for the workers.

``real_node_stack`` builds the images (cached), starts the loopback control plane with the
upstream scheduler, a real node (containerd + kubelet, ``node.py``) with the images imported,
PostgreSQL on the node's bridge for the pods, applies the CRD and ``helm install``s
``charts/kubetasks``. The demo and the end-to-end tests use it; ``Stack`` is what they get.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kubernetes
import psycopg

from kubetasks.migrations import migrate

from .controlplane import ControlPlane, free_port
from .images import build_images
from .node import RealNode
from .postgres import LocalPostgres

REPO = Path(__file__).resolve().parents[1]
OPERATOR_NAMESPACE = "kubetasks-system"
RELEASE = "kubetasks"
APP_IMAGE = "kubetasks/example-app:dev"
APP_IMAGE_NEXT = "kubetasks/example-app:next"  # the same image under a new tag, for rollouts
DJANGO_APP_IMAGE = "kubetasks/django-app:dev"  # examples/django_app, an argus-like Django project


@dataclass
class Stack:
    """A cluster with kubetasks installed, wherever it runs."""

    kubeconfig: Path
    helm: Path
    admin_dsn: str  # the database server as the tests reach it
    pod_dsn: Callable[[str], str]  # database name -> its URL as pods reach it
    operator_values: dict[str, Any]
    logs: Callable[[], str]
    workdir: Path
    restart_database: Callable[[], None]  # a fast restart: clients cut off, nothing committed lost
    kill_container: Callable[[str], bool]  # SIGKILL a container by its runtime id, as an OOM kill does
    extra: dict[str, Any] = field(default_factory=dict)

    def kubectl(self, *args: str, input: str | None = None, check: bool = True,
                timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["kubectl", f"--kubeconfig={self.kubeconfig}", f"--cache-dir={self.workdir / 'kubectl-cache'}",
             *args], input=input, capture_output=True, text=True, check=check, timeout=timeout)

    def api_client(self) -> kubernetes.client.ApiClient:
        return kubernetes.config.new_client_from_config(config_file=str(self.kubeconfig))

    def helm_run(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig),
               "HELM_CACHE_HOME": str(self.workdir / "helm-cache"),
               "HELM_CONFIG_HOME": str(self.workdir / "helm-config"),
               "HELM_DATA_HOME": str(self.workdir / "helm-data")}
        return subprocess.run([str(self.helm), *args], capture_output=True, text=True, env=env,
                              timeout=300)

    def new_database(self) -> tuple[str, str]:
        """A fresh migrated database: (URL for the tests, URL for pods)."""
        name = f"e2e_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        local = self.admin_dsn.rsplit("/", 1)[0] + f"/{name}"
        migrate(local)
        return local, self.pod_dsn(name)

    def install_operator(self) -> None:
        """``helm install`` of the chart, as a user installs it, and wait for the operator."""
        values = self.workdir / "operator-values.json"
        values.write_text(json.dumps(self.operator_values))
        result = self.helm_run("install", RELEASE, str(REPO / "charts" / "kubetasks"),
                               "--namespace", OPERATOR_NAMESPACE, "--create-namespace",
                               "--values", str(values), "--wait", "--timeout", "180s")
        if result.returncode != 0:
            raise AssertionError(f"helm install failed:\n{result.stdout}\n{result.stderr}\n"
                                 f"{self.operator_diagnostics()}")

    def operator_diagnostics(self) -> str:
        pods = self.kubectl("get", "pods", "-n", OPERATOR_NAMESPACE, "-o", "wide", check=False).stdout
        described = self.kubectl("describe", "pods", "-n", OPERATOR_NAMESPACE, check=False).stdout
        logs = self.kubectl("logs", "-n", OPERATOR_NAMESPACE, "-l", "app.kubernetes.io/name=kubetasks",
                            "--tail=80", check=False)
        return f"{pods}\n{described[-4000:]}\n{logs.stdout}{logs.stderr}"


@contextmanager
def real_node_stack(workdir: Path, log: Callable[[str], None] = print) -> Iterator[Stack]:
    """The control plane, the scheduler and a real node on this machine, with the operator."""
    started = time.monotonic()
    images = build_images(log=log)
    log(f"stack: images ready in {time.monotonic() - started:.1f}s")
    with ExitStack() as stack:
        control_plane = stack.enter_context(
            ControlPlane.start(workdir=workdir / "control-plane", real_nodes=True))
        log(f"stack: control plane up at {time.monotonic() - started:.1f}s")
        node = stack.enter_context(RealNode.start(
            control_plane, workdir=workdir / "node", images=[image.archive for image in images.values()]))
        node.ctr("images", "tag", "--force", f"docker.io/{APP_IMAGE}", f"docker.io/{APP_IMAGE_NEXT}")
        log(f"stack: node Ready at {time.monotonic() - started:.1f}s")
        postgres = stack.enter_context(LocalPostgres(also_listen=node.address, trust_network=node.subnet))
        cluster = Stack(
            kubeconfig=control_plane.kubeconfig,
            helm=control_plane.binaries.helm,
            admin_dsn=postgres.dsn,
            pod_dsn=lambda name: postgres.dsn_at(node.address, name),
            operator_values={
                "image": {"repository": "kubetasks/operator", "tag": "dev", "pullPolicy": "Never"},
                # No kube-proxy here: the operator reaches the loopback API server from the
                # node's network, where its ports must be free.
                "hostNetwork": True,
                "containerPorts": {"health": free_port(), "metrics": free_port()},
                "extraEnv": node.api_env(),
            },
            logs=lambda: control_plane.logs() + "\n" + node.logs(),
            workdir=workdir,
            restart_database=postgres.restart,
            kill_container=lambda container_id: node.ctr("tasks", "kill", "--signal", "SIGKILL",
                                                         container_id, check=False).returncode == 0,
            extra={"node": node, "control_plane": control_plane},
        )
        cluster.kubectl("apply", "-f", str(REPO / "crds" / "taskqueue.yaml"))
        cluster.kubectl("wait", "--for=condition=Established", "--timeout=30s", "crd/taskqueues.kubetasks.io")
        cluster.install_operator()
        log(f"stack: operator running at {time.monotonic() - started:.1f}s")
        yield cluster
