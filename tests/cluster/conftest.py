"""Fixtures of the cluster tier: a real control plane and a local kubelet, once per session.

- ``control_plane``: etcd + kube-apiserver + kube-controller-manager on loopback
  (``.kubeconfig``, ``.server``, ``.api_client()``, ``.kubectl(...)``).
- ``local_kubelet``: a node that runs pods' containers as local processes.
- ``namespace``: a fresh namespace per test, deleted afterwards.
- for the operator: ``crd`` (applied once), ``postgres`` (a server per session), ``dsn`` (a
  migrated database per test), ``cluster`` (typed access, with the database Secret ``db``),
  ``operator`` (``kubetasks-operator`` watching the test's namespace).

The binaries come from ``bash tests/cluster/build-binaries.sh``.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Generator, Iterator
from pathlib import Path

import kubernetes
import pytest
from localcluster.controlplane import ControlPlane
from localcluster.operator import (
    REPO,
    Cluster,
    OperatorProcess,
    drop_database,
    new_database,
    operator_running,
)
from localcluster.postgres import LocalPostgres
from localcluster.process_kubelet import IMAGE_ENTRYPOINTS, LocalKubelet


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    workdir = tmp_path_factory.mktemp("control-plane")
    with ControlPlane.start(workdir=workdir) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def api_client(control_plane: ControlPlane) -> Iterator[kubernetes.client.ApiClient]:
    with control_plane.api_client() as client:
        yield client


@pytest.fixture(scope="session")
def local_kubelet(
    control_plane: ControlPlane, api_client: kubernetes.client.ApiClient
) -> Iterator[LocalKubelet]:
    with LocalKubelet(
        api_client, log_dir=control_plane.workdir / "pods", entrypoints=IMAGE_ENTRYPOINTS
    ) as kubelet:
        yield kubelet


@pytest.fixture
def namespace(request: pytest.FixtureRequest, api_client: kubernetes.client.ApiClient) -> Iterator[str]:
    """A namespace of its own for one test; its pods are stopped when it is deleted."""
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"{slug}-{uuid.uuid4().hex[:6]}"
    core = kubernetes.client.CoreV1Api(api_client)
    core.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    _wait_for_default_service_account(core, name)
    yield name
    core.delete_namespace(name, _preload_content=False)


def _wait_for_default_service_account(core: kubernetes.client.CoreV1Api, namespace: str) -> None:
    # Pods are refused in a namespace until the controller manager made its `default` account.
    deadline = time.monotonic() + 30
    while True:
        try:
            core.read_namespaced_service_account("default", namespace, _preload_content=False)
            return
        except kubernetes.client.exceptions.ApiException as error:
            if error.status != 404 or time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failed cluster test's report ends with the control plane's recent logs."""
    report: pytest.TestReport = yield
    cluster = getattr(item, "funcargs", {}).get("control_plane")
    if report.failed and isinstance(cluster, ControlPlane):
        report.sections.append(("control plane (logs in " + str(cluster.workdir) + ")", cluster.logs()))
    return report


# -- the operator's tests --

@pytest.fixture(scope="session")
def postgres() -> Iterator[LocalPostgres]:
    with LocalPostgres() as server:
        yield server


@pytest.fixture(scope="session")
def crd(control_plane: ControlPlane, local_kubelet: LocalKubelet) -> None:
    control_plane.kubectl("apply", "-f", str(REPO / "crds" / "taskqueue.yaml"))
    control_plane.kubectl("wait", "--for=condition=Established", "--timeout=30s",
                          "crd/taskqueues.kubetasks.io")


@pytest.fixture
def dsn(postgres: LocalPostgres) -> Iterator[str]:
    name = f"t_{uuid.uuid4().hex[:10]}"
    yield new_database(postgres, name)
    drop_database(postgres, name)


@pytest.fixture
def cluster(api_client: kubernetes.client.ApiClient, namespace: str, dsn: str) -> Cluster:
    cluster = Cluster(api_client, namespace)
    cluster.create_secret("db", dsn)
    return cluster


@pytest.fixture
def operator(control_plane: ControlPlane, namespace: str, tmp_path: Path,
             cluster: Cluster) -> Iterator[OperatorProcess]:
    with operator_running(control_plane, namespace, tmp_path) as running:
        yield running
        print(running.log()[-6000:])
