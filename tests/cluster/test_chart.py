"""The Helm chart ``charts/kubetasks``: lint, what it renders, and an install on the real API server.

The chart repeats two sources of truth, and these tests hold it to them: its ClusterRole's rules
are those of ``operator/rbac.yaml`` and its ``crds/`` is the top-level ``crds/``.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from localcluster.controlplane import ControlPlane
from localcluster.operator import REPO
from localcluster.polling import wait_until

pytestmark = pytest.mark.cluster

CHART = REPO / "charts" / "kubetasks"
CHART_META = yaml.safe_load((CHART / "Chart.yaml").read_text())
APP_VERSION = CHART_META["appVersion"]
CRD_NAME = "taskqueues.kubetasks.io"

Document = dict[str, Any]


@dataclass(frozen=True, kw_only=True)
class Helm:
    """The cached helm binary, with a home of its own, pointed at the test control plane."""

    binary: Path
    kubeconfig: Path
    env: Mapping[str, str]

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(self.binary), f"--kubeconfig={self.kubeconfig}", *args],
            capture_output=True, text=True, env=dict(self.env), timeout=60)
        if check and result.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} exited {result.returncode}:\n{result.stderr}")
        return result

    def template(self, *options: str, release: str = "kt", namespace: str = "ops") -> list[Document]:
        rendered = self.run("template", release, str(CHART), f"--namespace={namespace}", *options)
        return [document for document in yaml.safe_load_all(rendered.stdout) if document]


@pytest.fixture
def helm(control_plane: ControlPlane, tmp_path: Path) -> Helm:
    # Caches, repositories and plugins under tmp_path: the user's helm setup plays no part.
    home = tmp_path / "helm-home"
    env = {
        "HOME": str(home),
        "XDG_CACHE_HOME": str(home / "cache"),
        "XDG_CONFIG_HOME": str(home / "config"),
        "XDG_DATA_HOME": str(home / "data"),
        "PATH": "/usr/bin:/bin",
    }
    return Helm(binary=control_plane.binaries.helm, kubeconfig=control_plane.kubeconfig, env=env)


def only(documents: list[Document], kind: str) -> Document:
    [document] = [d for d in documents if d["kind"] == kind]
    return document


def kinds(documents: list[Document]) -> set[str]:
    return {d["kind"] for d in documents}


def operator_container(documents: list[Document]) -> Document:
    containers: list[Document] = only(documents, "Deployment")["spec"]["template"]["spec"]["containers"]
    [container] = containers
    return container


def env_of(container: Document) -> dict[str, str]:
    return {variable["name"]: variable["value"] for variable in container["env"]}


def plain_manifest(name: str, kind: str) -> Document:
    return only(list(yaml.safe_load_all((REPO / "operator" / name).read_text())), kind)


def chart_labels(release: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "kubetasks",
        "app.kubernetes.io/instance": release,
        "app.kubernetes.io/version": APP_VERSION,
        "app.kubernetes.io/managed-by": "Helm",
        "app.kubernetes.io/part-of": "kubetasks",
        "app.kubernetes.io/component": "operator",
        "helm.sh/chart": f"kubetasks-{CHART_META['version']}",
    }


# -- helm lint and helm template --

def test_the_chart_passes_helm_lint(helm: Helm) -> None:
    linted = helm.run("lint", "--strict", str(CHART))
    assert "1 chart(s) linted, 0 chart(s) failed" in linted.stdout


def test_the_cluster_role_holds_exactly_the_rules_of_operator_rbac_yaml(helm: Helm) -> None:
    documents = helm.template(release="kt", namespace="ops")
    role = only(documents, "ClusterRole")
    assert role["rules"] == plain_manifest("rbac.yaml", "ClusterRole")["rules"]
    binding = only(documents, "ClusterRoleBinding")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                  "name": "kt-kubetasks-operator"}
    assert role["metadata"]["name"] == "kt-kubetasks-operator"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "kt-kubetasks-operator",
                                    "namespace": "ops"}]
    assert only(documents, "ServiceAccount")["metadata"]["name"] == "kt-kubetasks-operator"


def test_the_charts_crds_are_the_top_level_crds(helm: Helm) -> None:
    top_level = sorted(path.name for path in (REPO / "crds").iterdir())
    assert sorted(path.name for path in (CHART / "crds").iterdir()) == top_level
    for name in top_level:
        assert (CHART / "crds" / name).read_bytes() == (REPO / "crds" / name).read_bytes(), (
            f"charts/kubetasks/crds/{name} differs from crds/{name}: cp crds/{name} charts/kubetasks/crds/")
    shown = yaml.safe_load(helm.run("show", "crds", str(CHART)).stdout)
    assert shown == yaml.safe_load((REPO / "crds" / "taskqueue.yaml").read_text())
    assert "CustomResourceDefinition" not in kinds(helm.template())
    assert "CustomResourceDefinition" in kinds(helm.template("--include-crds"))


def test_the_deployment_is_the_one_of_operator_deploy_yaml(helm: Helm) -> None:
    documents = helm.template()
    deployment, plain = only(documents, "Deployment"), plain_manifest("deploy.yaml", "Deployment")
    assert deployment["spec"]["replicas"] == plain["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == plain["spec"]["strategy"] == {"type": "Recreate"}
    pod, plain_pod = deployment["spec"]["template"], plain["spec"]["template"]
    assert pod["spec"]["securityContext"] == plain_pod["spec"]["securityContext"]
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert pod["spec"]["serviceAccountName"] == only(documents, "ServiceAccount")["metadata"]["name"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod["metadata"]["labels"].items()
    assert pod["metadata"]["labels"] == chart_labels("kt")

    [container] = pod["spec"]["containers"]
    [plain_container] = plain_pod["spec"]["containers"]
    for key in ("name", "ports", "livenessProbe", "resources", "securityContext"):
        assert container[key] == plain_container[key], key
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"health": 8080, "metrics": 9090}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    # The image tag defaults to the chart's appVersion, the image the plain manifest names.
    assert container["image"] == f"ghcr.io/kubetasks/operator:{APP_VERSION}" == plain_container["image"]
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert env_of(container) == {"KUBETASKS_NAMESPACES": "", "KUBETASKS_LOG_LEVEL": "INFO"}


def test_a_release_named_kubetasks_gets_the_names_of_the_plain_manifests(helm: Helm) -> None:
    documents = helm.template(release="kubetasks", namespace="kubetasks-system")
    plain = [plain_manifest("deploy.yaml", "Deployment"),
             *(plain_manifest("rbac.yaml", kind)
               for kind in ("ServiceAccount", "ClusterRole", "ClusterRoleBinding"))]
    for manifest in plain:
        rendered = only(documents, manifest["kind"])
        assert rendered["metadata"]["name"] == manifest["metadata"]["name"] == "kubetasks-operator"
        assert rendered["metadata"].get("namespace") == manifest["metadata"].get("namespace")
    assert only(documents, "ClusterRoleBinding")["subjects"] == plain_manifest(
        "rbac.yaml", "ClusterRoleBinding")["subjects"]


def test_watch_namespaces_become_one_comma_separated_variable(helm: Helm) -> None:
    container = operator_container(helm.template("--set", "watchNamespaces={a,b}"))
    assert env_of(container)["KUBETASKS_NAMESPACES"] == "a,b"


def test_image_log_level_and_placement_come_from_values(helm: Helm) -> None:
    toleration = {"key": "dedicated", "operator": "Equal", "value": "ops", "effect": "NoSchedule"}
    documents = helm.template(
        "--set", "image.repository=registry.example/ops/kubetasks-operator",
        "--set", "image.tag=1.2.3",
        "--set", "image.pullPolicy=Always",
        "--set", "logLevel=DEBUG",
        "--set", "podAnnotations.team=ops",
        "--set", "nodeSelector.pool=system",
        "--set", "resources.limits.memory=1Gi",
        "--set-json", f"tolerations=[{json.dumps(toleration)}]",
        "--set-json", "imagePullSecrets=[{\"name\": \"regcred\"}]",
    )
    pod = only(documents, "Deployment")["spec"]["template"]
    [container] = pod["spec"]["containers"]
    assert container["image"] == "registry.example/ops/kubetasks-operator:1.2.3"
    assert container["imagePullPolicy"] == "Always"
    assert env_of(container)["KUBETASKS_LOG_LEVEL"] == "DEBUG"
    assert container["resources"] == {"requests": {"cpu": "50m", "memory": "128Mi"},
                                      "limits": {"memory": "1Gi"}}
    assert pod["metadata"]["annotations"] == {"team": "ops"}
    assert pod["spec"]["nodeSelector"] == {"pool": "system"}
    assert pod["spec"]["tolerations"] == [toleration]
    assert pod["spec"]["imagePullSecrets"] == [{"name": "regcred"}]


def test_rbac_the_service_account_and_the_metrics_service_can_be_left_out(helm: Helm) -> None:
    everything = helm.template()
    assert kinds(everything) == {"Deployment", "ServiceAccount", "ClusterRole", "ClusterRoleBinding",
                                 "Service"}
    service = only(everything, "Service")
    assert service["spec"]["ports"] == [{"name": "metrics", "port": 9090, "targetPort": "metrics"}]
    assert service["spec"]["selector"] == only(everything, "Deployment")["spec"]["selector"]["matchLabels"]

    assert kinds(helm.template("--set", "rbac.create=false")) == {"Deployment", "ServiceAccount", "Service"}
    assert kinds(helm.template("--set", "metrics.service.enabled=false")) == kinds(everything) - {"Service"}

    existing = helm.template("--set", "serviceAccount.create=false", "--set", "serviceAccount.name=ops-robot")
    assert "ServiceAccount" not in kinds(existing)
    assert only(existing, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "ops-robot"
    assert only(existing, "ClusterRoleBinding")["subjects"][0]["name"] == "ops-robot"


def test_wrong_values_are_refused_with_the_value_named(helm: Helm) -> None:
    typo = helm.run("template", "kt", str(CHART), "--set", "watchNamespace=a", check=False)
    assert typo.returncode != 0
    assert "'watchNamespace' not allowed" in typo.stderr

    level = helm.run("template", "kt", str(CHART), "--set", "logLevel=LOUD", check=False)
    assert level.returncode != 0
    assert "/logLevel" in level.stderr and "INFO" in level.stderr

    namespace = helm.run("template", "kt", str(CHART), "--set", "watchNamespaces={Shop_1}", check=False)
    assert namespace.returncode != 0
    assert "/watchNamespaces/0" in namespace.stderr


# -- helm install on the real control plane --

def objects(control_plane: ControlPlane, resources: str, *, release: str, namespace: str | None = None
            ) -> dict[tuple[str, str], Document]:
    """The objects of ``release`` found by the chart's labels, by (kind, name)."""
    where = ["-n", namespace] if namespace else []
    selector = f"app.kubernetes.io/instance={release},app.kubernetes.io/part-of=kubetasks"
    found = control_plane.kubectl("get", resources, *where, "-o", "json", "-l", selector)
    return {(item["kind"], item["metadata"]["name"]): item for item in json.loads(found.stdout)["items"]}


def can_i(control_plane: ControlPlane, verb: str, resource: str, *, namespace: str, account: str) -> bool:
    answer = control_plane.kubectl("auth", "can-i", verb, resource, "-n", namespace,
                                   f"--as=system:serviceaccount:{namespace}:{account}", check=False)
    return answer.stdout.strip() == "yes"


def test_helm_installs_the_operator_and_uninstall_removes_it(
        helm: Helm, control_plane: ControlPlane, namespace: str) -> None:
    release = f"kt-{uuid.uuid4().hex[:6]}"
    name = f"{release}-kubetasks-operator"
    installed = helm.run("install", release, str(CHART), f"--namespace={namespace}",
                         "--set", f"watchNamespaces={{{namespace}}}")
    assert "STATUS: deployed" in installed.stdout
    assert f"serving the TaskQueues of: {namespace}." in installed.stdout  # NOTES.txt

    namespaced = objects(control_plane, "deployments,serviceaccounts,services", release=release,
                         namespace=namespace)
    assert set(namespaced) == {("Deployment", name), ("ServiceAccount", name), ("Service", f"{name}-metrics")}
    cluster_scoped = objects(control_plane, "clusterroles,clusterrolebindings", release=release)
    assert set(cluster_scoped) == {("ClusterRole", name), ("ClusterRoleBinding", name)}
    for found in [*namespaced.values(), *cluster_scoped.values()]:
        assert found["metadata"]["labels"] == chart_labels(release), found["kind"]
    assert cluster_scoped["ClusterRole", name]["rules"] == plain_manifest("rbac.yaml", "ClusterRole")["rules"]
    container = namespaced["Deployment", name]["spec"]["template"]["spec"]["containers"][0]
    assert env_of(container)["KUBETASKS_NAMESPACES"] == namespace

    # The CRD is served (created by this install, or found and left alone), TaskQueues validated.
    crd = json.loads(control_plane.kubectl("get", "crd", CRD_NAME, "-o", "json").stdout)
    assert {c["type"]: c["status"] for c in crd["status"]["conditions"]}["Established"] == "True"
    applied = control_plane.kubectl("apply", "--dry-run=server", "-n", namespace,
                                    "-f", str(REPO / "examples" / "taskqueue.yaml"))
    assert "taskqueue.kubetasks.io/emails created (server dry run)" in applied.stdout

    # The binding gives the chart's ServiceAccount the operator's rights, and no more.
    assert can_i(control_plane, "patch", "taskqueues.kubetasks.io", namespace=namespace, account=name)
    assert can_i(control_plane, "get", "secrets", namespace=namespace, account=name)
    assert not can_i(control_plane, "list", "secrets", namespace=namespace, account=name)
    assert not can_i(control_plane, "delete", "deployments.apps", namespace=namespace, account=name)

    # A second release beside it: its own cluster-wide names, and the existing CRD is no error.
    other = f"kt-{uuid.uuid4().hex[:6]}"
    helm.run("install", other, str(CHART), f"--namespace={namespace}")
    assert set(objects(control_plane, "clusterroles", release=other)) == {
        ("ClusterRole", f"{other}-kubetasks-operator")}

    helm.run("uninstall", release, f"--namespace={namespace}")
    wait_until(lambda: not objects(control_plane, "deployments,serviceaccounts,services", release=release,
                                   namespace=namespace), timeout=30, what="the release's objects deleted")
    assert not objects(control_plane, "clusterroles,clusterrolebindings", release=release)
    assert set(objects(control_plane, "deployments", release=other, namespace=namespace)) == {
        ("Deployment", f"{other}-kubetasks-operator")}
    helm.run("uninstall", other, f"--namespace={namespace}")
    assert not objects(control_plane, "clusterroles,clusterrolebindings", release=other)
    # Helm never deletes what it installed from crds/: the TaskQueues outlive the release.
    control_plane.kubectl("get", "crd", CRD_NAME)
