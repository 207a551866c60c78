"""The control plane of the cluster tier is the real thing: version, RBAC, schema, controllers, helm."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import textwrap
import time
from pathlib import Path

import kubernetes
import pytest
from kubernetes.client.exceptions import ApiException
from localcluster.controlplane import Binaries, ControlPlane, ControlPlaneError
from localcluster.polling import wait_until
from localcluster.processes import alive

pytestmark = pytest.mark.cluster


def test_api_server_reports_the_pinned_release(control_plane: ControlPlane) -> None:
    version = json.loads(control_plane.kubectl("version", "-o", "json").stdout)["serverVersion"]

    assert version["gitVersion"] == control_plane.binaries.kubernetes_version
    assert version["major"] == "1"
    assert version["minor"] == control_plane.binaries.kubernetes_version.split(".")[1]


def test_kubeconfig_works_for_kubectl_and_the_python_client(control_plane: ControlPlane) -> None:
    assert control_plane.server.startswith("https://127.0.0.1:")
    listed = control_plane.kubectl("get", "namespaces", "-o", "name").stdout.split()
    with control_plane.api_client() as client:
        names = [ns.metadata.name for ns in kubernetes.client.CoreV1Api(client).list_namespace().items]

    assert {"namespace/default", "namespace/kube-system", "namespace/kube-node-lease"} <= set(listed)
    assert sorted(names) == sorted(name.removeprefix("namespace/") for name in listed)


def test_rbac_forbids_a_service_account_without_roles(
    control_plane: ControlPlane, api_client: kubernetes.client.ApiClient, namespace: str
) -> None:
    core = kubernetes.client.CoreV1Api(api_client)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "nobody"}})
    token = core.create_namespaced_service_account_token(
        "nobody", namespace, {"spec": {"expirationSeconds": 600}}
    ).status.token
    config = kubernetes.client.Configuration()
    config.host = control_plane.server
    config.ssl_ca_cert = str(control_plane.pki.ca.cert)
    config.api_key = {"BearerToken": token}
    config.api_key_prefix = {"BearerToken": "Bearer"}

    with kubernetes.client.ApiClient(config) as as_nobody, pytest.raises(ApiException) as refused:
        kubernetes.client.CoreV1Api(as_nobody).list_namespaced_pod(namespace)

    assert refused.value.status == 403
    assert f"system:serviceaccount:{namespace}:nobody" in str(refused.value.body)


def test_api_server_refuses_a_manifest_with_a_schema_error(
    control_plane: ControlPlane, namespace: str
) -> None:
    manifest = textwrap.dedent(
        """\
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: broken}
        spec:
          replicas: "three"
          selector: {matchLabels: {app: broken}}
          template:
            metadata: {labels: {app: broken}}
            spec:
              containers: [{name: main, image: busybox}]
        """
    )

    result = control_plane.kubectl(
        "apply", "--dry-run=server", "-n", namespace, "-f", "-", input=manifest, check=False
    )

    assert result.returncode != 0
    assert "spec.replicas" in result.stderr
    assert "string" in result.stderr
    missing = control_plane.kubectl("get", "deployment", "broken", "-n", namespace, check=False)
    assert missing.returncode != 0


def test_api_server_refuses_an_unknown_field(control_plane: ControlPlane, namespace: str) -> None:
    manifest = textwrap.dedent(
        """\
        apiVersion: v1
        kind: ConfigMap
        metadata: {name: typo}
        dta: {key: value}
        """
    )

    result = control_plane.kubectl(
        "apply", "--dry-run=server", "-n", namespace, "-f", "-", input=manifest, check=False
    )

    assert result.returncode != 0
    assert 'unknown field "dta"' in result.stderr


def test_garbage_collector_removes_dependents(
    api_client: kubernetes.client.ApiClient, namespace: str
) -> None:
    core = kubernetes.client.CoreV1Api(api_client)
    owner = core.create_namespaced_config_map(namespace, {"metadata": {"name": "owner"}})
    reference = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid}
    core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "dependent", "ownerReferences": [reference]}}
    )

    core.delete_namespaced_config_map("owner", namespace)

    def dependent_gone() -> bool:
        names = [cm.metadata.name for cm in core.list_namespaced_config_map(namespace).items]
        return "dependent" not in names

    assert wait_until(dependent_gone, timeout=30,
                      what="the garbage collector to delete the dependent ConfigMap")


def test_helm_installs_a_chart(control_plane: ControlPlane, namespace: str, tmp_path: Path) -> None:
    chart = tmp_path / "chart"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: probe\nversion: 0.1.0\n")
    (chart / "values.yaml").write_text("greeting: hello\n")
    (chart / "templates" / "configmap.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: '{{ .Release.Name }}-greeting'}\n"
        "data: {greeting: '{{ .Values.greeting }}'}\n"
    )
    helm = [str(control_plane.binaries.helm), f"--kubeconfig={control_plane.kubeconfig}", "-n", namespace]
    # A home of its own keeps helm's caches (and the discovery cache) out of the real one.
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}

    version = subprocess.run(
        [helm[0], "version", "--short"], capture_output=True, text=True, check=True, env=env
    )
    subprocess.run(
        [*helm, "install", "demo", str(chart), "--set", "greeting=hi"],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )

    assert version.stdout.startswith("v3.")
    data = control_plane.kubectl(
        "get", "configmap", "demo-greeting", "-n", namespace, "-o", "jsonpath={.data}"
    ).stdout
    assert json.loads(data) == {"greeting": "hi"}


def test_missing_binaries_say_how_to_build_them(tmp_path: Path) -> None:
    with pytest.raises(ControlPlaneError, match=r"bash localcluster/build-binaries\.sh"):
        Binaries.from_cache(tmp_path)


def test_control_plane_stops_all_its_processes(tmp_path: Path) -> None:
    started = time.monotonic()
    with ControlPlane.start(workdir=tmp_path / "second") as cluster:
        elapsed = time.monotonic() - started
        processes = [component.process for component in cluster.components]
        assert [component.name for component in cluster.components] == [
            "etcd",
            "kube-apiserver",
            "kube-controller-manager",
        ]
        assert all(process.poll() is None for process in processes)

    assert all(process.poll() is not None for process in processes)
    assert processes_mentioning(str(tmp_path / "second")) == []
    # From the warm cache the whole control plane is up in well under a minute.
    assert elapsed < 60


def test_a_component_that_fails_to_start_is_reported_with_its_log(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    broken = tmp_path / "kube-apiserver"
    broken.write_text("#!/bin/sh\necho 'E0101 bad flag: --no-such-flag' >&2\nexit 3\n")
    broken.chmod(0o755)
    binaries = dataclasses.replace(control_plane.binaries, kube_apiserver=broken)

    with (
        pytest.raises(ControlPlaneError) as failed,
        ControlPlane.start(workdir=tmp_path / "broken", binaries=binaries) as cluster,
    ):
        pytest.fail(f"started with a broken kube-apiserver: {cluster.server}")

    assert "kube-apiserver exited with code 3 during start-up" in str(failed.value)
    assert "kube-apiserver| E0101 bad flag: --no-such-flag" in str(failed.value)
    # etcd had started; it was stopped with the rest.
    assert (tmp_path / "broken" / "etcd" / "member").is_dir()
    assert processes_mentioning(str(tmp_path / "broken")) == []


def processes_mentioning(text: str) -> list[int]:
    """Live processes whose command line contains ``text``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if text.encode() in cmdline and alive(int(entry.name)):
            found.append(int(entry.name))
    return found
