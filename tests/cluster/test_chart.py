"""The Helm chart ``charts/kubetasks``: lint, what it renders, and installs on the real API server.

The chart repeats two sources of truth, and these tests hold it to them: its cluster-wide rules
are those of ``operator/rbac.yaml`` (with ``watchNamespaces``, split between a ClusterRole and a
Role per watched namespace) and its ``crds/`` is the top-level ``crds/``. What the RBAC grants is
asked of the API server's authorizer, and the operator runs with nothing else; the migration hook
runs ``kubetasks migrate`` on the local kubelet against a real, empty database.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes
import psycopg
import pytest
import yaml
from localcluster import sample_tasks
from localcluster.controlplane import ControlPlane
from localcluster.operator import (
    REPO,
    Cluster,
    OperatorProcess,
    backend_for,
    drop_database,
    taskqueue,
)
from localcluster.polling import wait_until
from localcluster.postgres import LocalPostgres
from localcluster.process_kubelet import LocalKubelet

from kubetasks import TaskResultStatus
from kubetasks.migrations import available

pytestmark = pytest.mark.cluster

CHART = REPO / "charts" / "kubetasks"
CHART_META = yaml.safe_load((CHART / "Chart.yaml").read_text())
APP_VERSION = CHART_META["appVersion"]
CRD_NAME = "taskqueues.kubetasks.io"

Document = dict[str, Any]
Resource = tuple[str, str, str]  # (API group, resource, subresource)

# What the operator calls, read from operator/kubetasks_operator/ (kube.py, handlers.py) and
# from kopf (which lists, watches and merge/JSON-patches the resources it serves, posts core/v1
# Events and, serving named namespaces, lists and watches them): the RBAC must grant these and
# nothing else. In each namespace served ...
NAMESPACED_GRANTS: dict[Resource, set[str]] = {
    ("kubetasks.io", "taskqueues", ""): {"list", "watch", "patch"},
    ("kubetasks.io", "taskqueues", "status"): {"patch"},
    # kopf.adopt() sets blockOwnerDeletion (OwnerReferencesPermissionEnforcement checks this).
    ("kubetasks.io", "taskqueues", "finalizers"): {"update"},
    ("apps", "deployments", ""): {"get", "create", "update"},
    ("apps", "deployments", "scale"): {"patch"},
    ("", "pods", ""): {"list", "watch", "patch"},
    ("", "secrets", ""): {"get"},
    ("", "events", ""): {"create"},
}
# ... and cluster-wide, whatever namespaces are served.
CLUSTER_GRANTS: dict[Resource, set[str]] = {
    ("apiextensions.k8s.io", "customresourcedefinitions", ""): {"list", "watch"},
    ("", "namespaces", ""): {"list", "watch"},
}
VERBS = ("get", "list", "watch", "create", "update", "patch", "delete", "deletecollection")
# Asked of the authorizer, besides the granted ones: what an operator must not be able to do.
NEVER_NAMESPACED: tuple[Resource, ...] = (
    ("", "pods", "exec"), ("", "pods", "log"), ("", "configmaps", ""), ("", "serviceaccounts", ""),
    ("", "serviceaccounts", "token"), ("apps", "replicasets", ""), ("batch", "jobs", ""),
    ("events.k8s.io", "events", ""), ("rbac.authorization.k8s.io", "roles", ""),
    ("rbac.authorization.k8s.io", "rolebindings", ""),
)
NEVER_CLUSTER: tuple[Resource, ...] = (
    ("", "nodes", ""), ("rbac.authorization.k8s.io", "clusterroles", ""),
    ("rbac.authorization.k8s.io", "clusterrolebindings", ""),
)


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
    [document] = of_kind(documents, kind)
    return document


def of_kind(documents: list[Document], kind: str) -> list[Document]:
    return [d for d in documents if d["kind"] == kind]


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


def chart_labels(release: str, component: str = "operator") -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "kubetasks",
        "app.kubernetes.io/instance": release,
        "app.kubernetes.io/version": APP_VERSION,
        "app.kubernetes.io/managed-by": "Helm",
        "app.kubernetes.io/part-of": "kubetasks",
        "app.kubernetes.io/component": component,
        "helm.sh/chart": f"kubetasks-{CHART_META['version']}",
    }


def grants_of(rules: list[Document]) -> dict[Resource, set[str]]:
    """RBAC rules as {(group, resource, subresource): verbs}; no wildcards, no resourceNames."""
    grants: dict[Resource, set[str]] = {}
    for rule in rules:
        assert set(rule) == {"apiGroups", "resources", "verbs"}, rule
        assert "*" not in [*rule["apiGroups"], *rule["resources"], *rule["verbs"]], rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                name, _, subresource = resource.partition("/")
                grants.setdefault((group, name, subresource), set()).update(rule["verbs"])
    return grants


def merged(*tables: dict[Resource, set[str]]) -> dict[Resource, set[str]]:
    grants: dict[Resource, set[str]] = {}
    for table in tables:
        for key, verbs in table.items():
            grants.setdefault(key, set()).update(verbs)
    return grants


def template_fails(helm: Helm, *options: str) -> str:
    """The error of a ``helm template`` that must fail."""
    result = helm.run("template", "kt", str(CHART), *options, check=False)
    assert result.returncode != 0, f"helm template {' '.join(options)} was accepted"
    return result.stderr


def migration_values(secret: str = "db", *more: str) -> tuple[str, ...]:
    return ("--set", "migrations.enabled=true", "--set", f"migrations.databaseSecret.name={secret}", *more)


# -- helm lint and helm template --

def test_the_chart_passes_helm_lint(helm: Helm) -> None:
    linted = helm.run("lint", "--strict", str(CHART))
    assert "1 chart(s) linted, 0 chart(s) failed" in linted.stdout


def test_the_cluster_role_holds_exactly_the_rules_of_operator_rbac_yaml(helm: Helm) -> None:
    documents = helm.template(release="kt", namespace="ops")
    role = only(documents, "ClusterRole")
    assert role["rules"] == plain_manifest("rbac.yaml", "ClusterRole")["rules"]
    # ... which are the calls the operator makes, in every namespace, and no other.
    assert grants_of(role["rules"]) == merged(CLUSTER_GRANTS, NAMESPACED_GRANTS)
    assert not of_kind(documents, "Role") and not of_kind(documents, "RoleBinding")
    binding = only(documents, "ClusterRoleBinding")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                  "name": "kt-kubetasks-operator"}
    assert role["metadata"]["name"] == "kt-kubetasks-operator"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "kt-kubetasks-operator",
                                    "namespace": "ops"}]
    assert only(documents, "ServiceAccount")["metadata"]["name"] == "kt-kubetasks-operator"


def test_with_watch_namespaces_the_namespaced_rules_are_roles_in_those_namespaces_only(helm: Helm) -> None:
    documents = helm.template("--set", "watchNamespaces={a,b}", release="kt", namespace="ops")
    plain_rules = plain_manifest("rbac.yaml", "ClusterRole")["rules"]
    cluster_role = only(documents, "ClusterRole")
    # Cluster-wide, only what kopf lists and watches to discover CRDs and namespaces.
    assert grants_of(cluster_role["rules"]) == CLUSTER_GRANTS
    assert only(documents, "ClusterRoleBinding")["roleRef"]["name"] == cluster_role["metadata"]["name"]

    roles, bindings = of_kind(documents, "Role"), of_kind(documents, "RoleBinding")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["a", "b"]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["a", "b"]
    for role in roles:
        assert role["metadata"]["name"] == "kt-kubetasks-operator"
        assert role["metadata"]["labels"] == chart_labels("kt")
        assert grants_of(role["rules"]) == NAMESPACED_GRANTS
        # The plain manifest's rules, split: cluster-scoped first, then the namespaced ones.
        assert cluster_role["rules"] + role["rules"] == plain_rules
    for binding in bindings:
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                      "name": "kt-kubetasks-operator"}
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "kt-kubetasks-operator",
                                        "namespace": "ops"}]

    # Without RBAC from the chart, none of it; a namespace named twice is refused.
    unbound = helm.template("--set", "watchNamespaces={a,b}", "--set", "rbac.create=false")
    assert kinds(unbound) == {"Deployment", "ServiceAccount", "Service"}
    assert "/watchNamespaces" in template_fails(helm, "--set", "watchNamespaces={a,a}")


def test_the_charts_crds_are_the_top_level_crds(helm: Helm) -> None:
    top_level = sorted(path.name for path in (REPO / "crds").iterdir())
    assert sorted(path.name for path in (CHART / "crds").iterdir()) == top_level
    for name in top_level:
        assert (CHART / "crds" / name).read_bytes() == (REPO / "crds" / name).read_bytes(), (
            f"charts/kubetasks/crds/{name} differs from crds/{name}: cp crds/{name} charts/kubetasks/crds/")
    shown = [d for d in yaml.safe_load_all(helm.run("show", "crds", str(CHART)).stdout) if d]
    assert sorted(shown, key=lambda d: d["metadata"]["name"]) == sorted(
        (d for name in top_level for d in yaml.safe_load_all((REPO / "crds" / name).read_text()) if d),
        key=lambda d: d["metadata"]["name"])
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
    assert env_of(container) == {"KUBETASKS_NAMESPACES": "", "KUBETASKS_LOG_LEVEL": "INFO",
                                 "KUBETASKS_OPERATOR_PORT": "8080", "KUBETASKS_METRICS_PORT": "9090"}


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
    namespaced = helm.template("--set", "serviceAccount.create=false",
                               "--set", "serviceAccount.name=ops-robot", "--set", "watchNamespaces={a}")
    assert only(namespaced, "RoleBinding")["subjects"][0]["name"] == "ops-robot"


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


# -- the migration hook --

def test_the_migration_job_is_off_by_default(helm: Helm) -> None:
    assert "Job" not in kinds(helm.template())
    assert "Job" not in kinds(helm.template("--set", "migrations.databaseSecret.name=db"))


def test_the_migration_job_is_a_pre_install_and_pre_upgrade_hook_hardened_as_the_operator(helm: Helm) -> None:
    documents = helm.template(*migration_values("app-db", "--set", "migrations.databaseSecret.key=dsn"),
                              release="kt", namespace="ops")
    job = only(documents, "Job")
    assert job["metadata"]["name"] == "kt-kubetasks-migrate"
    assert job["metadata"]["namespace"] == "ops"
    assert job["metadata"]["labels"] == chart_labels("kt", "migrations")
    assert job["metadata"]["annotations"] == {
        "helm.sh/hook": "pre-install,pre-upgrade",
        "helm.sh/hook-weight": "0",
        "helm.sh/hook-delete-policy": "before-hook-creation,hook-succeeded",
    }
    assert job["spec"]["backoffLimit"] == 2
    assert job["spec"]["activeDeadlineSeconds"] == 240
    pod = job["spec"]["template"]
    assert pod["metadata"]["labels"] == chart_labels("kt", "migrations")
    # Not selected by the operator's Deployment.
    operator_selector = only(documents, "Deployment")["spec"]["selector"]["matchLabels"]
    assert not operator_selector.items() <= pod["metadata"]["labels"].items()

    spec = pod["spec"]
    assert spec["restartPolicy"] == "Never"
    assert spec["automountServiceAccountToken"] is False
    assert "serviceAccountName" not in spec  # the chart's account is made after pre-install hooks
    [container] = spec["containers"]
    assert container["command"] == ["kubetasks", "migrate"]
    assert "args" not in container
    assert container["env"] == [
        {"name": "KUBETASKS_DATABASE_URL", "valueFrom": {"secretKeyRef": {"name": "app-db", "key": "dsn"}}},
        {"name": "KUBETASKS_LOG_LEVEL", "value": "INFO"},
    ]
    # The operator image (it installs the kubetasks package), at the operator's version.
    operator_pod = only(documents, "Deployment")["spec"]["template"]
    [operator] = operator_pod["spec"]["containers"]
    assert container["image"] == operator["image"] == f"ghcr.io/kubetasks/operator:{APP_VERSION}"
    assert container["imagePullPolicy"] == operator["imagePullPolicy"]
    # The operator's hardened security contexts, as the plain manifest spells them.
    plain_pod = plain_manifest("deploy.yaml", "Deployment")["spec"]["template"]
    assert (spec["securityContext"] == operator_pod["spec"]["securityContext"]
            == plain_pod["spec"]["securityContext"])
    assert container["securityContext"] == operator["securityContext"] == {
        "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert container["resources"] == {"requests": {"cpu": "50m", "memory": "64Mi"},
                                      "limits": {"memory": "256Mi"}}


def test_the_migration_job_follows_its_values(helm: Helm) -> None:
    toleration = {"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}
    job = only(helm.template(*migration_values(
        "db", "--set", "migrations.namespace=shop",
        "--set", "migrations.image.repository=registry.example/app",
        "--set", "migrations.image.tag=2.0", "--set", "migrations.image.pullPolicy=Always",
        "--set", "migrations.backoffLimit=0", "--set", "migrations.activeDeadlineSeconds=60",
        "--set", "logLevel=DEBUG", "--set", "nodeSelector.pool=system",
        "--set-json", f"tolerations=[{json.dumps(toleration)}]",
        "--set-json", "imagePullSecrets=[{\"name\": \"regcred\"}]"), namespace="ops"), "Job")
    assert job["metadata"]["namespace"] == "shop"  # next to the Secret, not in the release's
    assert (job["spec"]["backoffLimit"], job["spec"]["activeDeadlineSeconds"]) == (0, 60)
    spec = job["spec"]["template"]["spec"]
    [container] = spec["containers"]
    assert container["image"] == "registry.example/app:2.0"
    assert container["imagePullPolicy"] == "Always"
    assert env_of({"env": container["env"][1:]}) == {"KUBETASKS_LOG_LEVEL": "DEBUG"}
    assert spec["nodeSelector"] == {"pool": "system"}
    assert spec["tolerations"] == [toleration]
    assert spec["imagePullSecrets"] == [{"name": "regcred"}]

    # Only the tag given: the operator's repository at that tag; image.tag moves both.
    tagged = only(helm.template(*migration_values("db", "--set", "image.tag=1.5")), "Job")
    assert tagged["spec"]["template"]["spec"]["containers"][0]["image"] == "ghcr.io/kubetasks/operator:1.5"


@pytest.mark.parametrize(("values", "named"), [
    (("--set", "migrations.enabled=true"), "'/migrations/databaseSecret/name': minLength"),
    (("--set", "migrations.enabled=true", "--set", "migrations.databaseSecret.name=null"),
     "missing property 'name'"),
    (migration_values("Bad_Secret"), "'Bad_Secret' does not match"),
    (migration_values("db", "--set", "migrations.databaseSecret.key=a/b"), "'a/b' does not match"),
    (migration_values("db", "--set", "migrations.namespace=Shop"), "'Shop' does not match"),
    (migration_values("db", "--set", "migrations.backoffLimit=-1"), "'/migrations/backoffLimit'"),
    (migration_values("db", "--set", "migrations.activeDeadlineSeconds=0"),
     "'/migrations/activeDeadlineSeconds'"),
    (migration_values("db", "--set", "migrations.image.pullPolicy=Sometimes"),
     "'/migrations/image/pullPolicy'"),
    (("--set", "migrations.enabled=yes-please"), "'/migrations/enabled'"),
    (("--set", "migrations.enable=true"), "'enable' not allowed"),
    (("--set", "migrations.databaseSecret.nmae=db"), "'nmae' not allowed"),
    (("--set", "migrations.image.name=x"), "'name' not allowed"),
])
def test_wrong_migration_values_are_refused_with_the_value_named(
        helm: Helm, values: tuple[str, ...], named: str) -> None:
    error = template_fails(helm, *values)
    assert named in error, error


# -- helm install on the real control plane --

def objects(control_plane: ControlPlane, resources: str, *, release: str, namespace: str | None = None
            ) -> dict[tuple[str, str], Document]:
    """The objects of ``release`` found by the chart's labels, by (kind, name); every namespace
    when ``namespace`` is None."""
    where = ["-n", namespace] if namespace else ["--all-namespaces"]
    selector = f"app.kubernetes.io/instance={release},app.kubernetes.io/part-of=kubetasks"
    found = control_plane.kubectl("get", resources, *where, "-o", "json", "-l", selector)
    return {(item["kind"], item["metadata"]["name"]): item for item in json.loads(found.stdout)["items"]}


def placed(control_plane: ControlPlane, resources: str, *, release: str) -> set[tuple[str, str]]:
    """(kind, namespace) of each of ``release``'s namespaced objects, in every namespace."""
    selector = f"app.kubernetes.io/instance={release},app.kubernetes.io/part-of=kubetasks"
    found = control_plane.kubectl("get", resources, "--all-namespaces", "-o", "json", "-l", selector)
    return {(item["kind"], item["metadata"]["namespace"]) for item in json.loads(found.stdout)["items"]}


def can_i(control_plane: ControlPlane, verb: str, resource: str, *, namespace: str | None,
          account: str, account_namespace: str) -> bool:
    """``kubectl auth can-i`` as the ServiceAccount; ``namespace`` None asks cluster-wide."""
    where = ["-n", namespace] if namespace else ["--all-namespaces"]
    answer = control_plane.kubectl(
        "auth", "can-i", verb, resource, *where,
        f"--as=system:serviceaccount:{account_namespace}:{account}", check=False)
    return answer.stdout.strip() == "yes"


@dataclass(frozen=True)
class Authorizer:
    """The API server's answers for a ServiceAccount, asked with SubjectAccessReviews (what
    ``kubectl auth can-i --as`` asks, many at once without a process each)."""

    api: kubernetes.client.AuthorizationV1Api
    account: str
    account_namespace: str

    def allows(self, verb: str, resource: Resource, namespace: str) -> bool:
        group, name, subresource = resource
        review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": {
            "user": f"system:serviceaccount:{self.account_namespace}:{self.account}",
            "groups": ["system:serviceaccounts", f"system:serviceaccounts:{self.account_namespace}",
                       "system:authenticated"],
            "resourceAttributes": {"namespace": namespace, "verb": verb, "group": group,
                                   "resource": name, "subresource": subresource}}}
        answer = self.api.create_subject_access_review(review, _preload_content=False)
        return bool(json.loads(answer.data)["status"].get("allowed"))

    def grants(self, resources: Iterable[Resource], namespace: str) -> dict[Resource, set[str]]:
        """What is allowed of ``resources`` in ``namespace`` ("" for cluster-wide)."""
        granted: dict[Resource, set[str]] = {}
        for resource in resources:
            verbs = {verb for verb in VERBS if self.allows(verb, resource, namespace)}
            if verbs:
                granted[resource] = verbs
        return granted


@pytest.fixture
def authorizer_for(api_client: kubernetes.client.ApiClient) -> Callable[[str, str], Authorizer]:
    def make(account: str, account_namespace: str) -> Authorizer:
        return Authorizer(kubernetes.client.AuthorizationV1Api(api_client), account, account_namespace)
    return make


@pytest.fixture
def make_namespace(api_client: kubernetes.client.ApiClient) -> Iterator[Callable[[str], str]]:
    """Namespaces beyond the test's own, deleted afterwards."""
    core = kubernetes.client.CoreV1Api(api_client)
    made: list[str] = []

    def make(prefix: str) -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:6]}"
        core.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
        made.append(name)
        return name

    yield make
    for name in made:
        core.delete_namespace(name, _preload_content=False)


NAMESPACED_RESOURCES = (*NAMESPACED_GRANTS, *NEVER_NAMESPACED)
CLUSTER_RESOURCES = (*CLUSTER_GRANTS, *NEVER_CLUSTER)


def test_helm_installs_the_operator_and_uninstall_removes_it(
        helm: Helm, control_plane: ControlPlane, namespace: str) -> None:
    release = f"kt-{uuid.uuid4().hex[:6]}"
    name = f"{release}-kubetasks-operator"
    installed = helm.run("install", release, str(CHART), f"--namespace={namespace}",
                         "--set", f"watchNamespaces={{{namespace}}}")
    assert "STATUS: deployed" in installed.stdout
    assert f"serving the TaskQueues of: {namespace}." in installed.stdout  # NOTES.txt
    assert "migrated" not in installed.stdout  # no migration Job by default

    namespaced = objects(control_plane, "deployments,serviceaccounts,services,roles,rolebindings",
                         release=release, namespace=namespace)
    assert set(namespaced) == {("Deployment", name), ("ServiceAccount", name), ("Service", f"{name}-metrics"),
                               ("Role", name), ("RoleBinding", name)}
    cluster_scoped = objects(control_plane, "clusterroles,clusterrolebindings", release=release)
    assert set(cluster_scoped) == {("ClusterRole", name), ("ClusterRoleBinding", name)}
    for found in [*namespaced.values(), *cluster_scoped.values()]:
        assert found["metadata"]["labels"] == chart_labels(release), found["kind"]
    assert (cluster_scoped["ClusterRole", name]["rules"] + namespaced["Role", name]["rules"]
            == plain_manifest("rbac.yaml", "ClusterRole")["rules"])
    container = namespaced["Deployment", name]["spec"]["template"]["spec"]["containers"][0]
    assert env_of(container)["KUBETASKS_NAMESPACES"] == namespace

    # The CRD is served (created by this install, or found and left alone), TaskQueues validated.
    crd = json.loads(control_plane.kubectl("get", "crd", CRD_NAME, "-o", "json").stdout)
    assert {c["type"]: c["status"] for c in crd["status"]["conditions"]}["Established"] == "True"
    applied = control_plane.kubectl("apply", "--dry-run=server", "-n", namespace,
                                    "-f", str(REPO / "examples" / "taskqueue.yaml"))
    assert "taskqueue.kubetasks.io/emails created (server dry run)" in applied.stdout

    # The bindings give the chart's ServiceAccount the operator's rights, and no more.
    def may(verb: str, resource: str) -> bool:
        return can_i(control_plane, verb, resource, namespace=namespace, account=name,
                     account_namespace=namespace)
    assert may("patch", "taskqueues.kubetasks.io")
    assert may("get", "secrets")
    assert not may("list", "secrets")
    assert not may("delete", "deployments.apps")

    # A second release beside it, serving every namespace: its own cluster-wide names, and the
    # existing CRD is no error.
    other = f"kt-{uuid.uuid4().hex[:6]}"
    helm.run("install", other, str(CHART), f"--namespace={namespace}")
    other_roles = objects(control_plane, "clusterroles", release=other)
    assert set(other_roles) == {("ClusterRole", f"{other}-kubetasks-operator")}
    assert other_roles["ClusterRole", f"{other}-kubetasks-operator"]["rules"] == plain_manifest(
        "rbac.yaml", "ClusterRole")["rules"]
    assert not placed(control_plane, "roles,rolebindings", release=other)

    helm.run("uninstall", release, f"--namespace={namespace}")
    wait_until(lambda: not objects(control_plane, "deployments,serviceaccounts,services,roles,rolebindings",
                                   release=release, namespace=namespace),
               timeout=30, what="the release's objects deleted")
    assert not objects(control_plane, "clusterroles,clusterrolebindings", release=release)
    assert set(objects(control_plane, "deployments", release=other, namespace=namespace)) == {
        ("Deployment", f"{other}-kubetasks-operator")}
    helm.run("uninstall", other, f"--namespace={namespace}")
    assert not objects(control_plane, "clusterroles,clusterrolebindings", release=other)
    # Helm never deletes what it installed from crds/: the TaskQueues outlive the release.
    control_plane.kubectl("get", "crd", CRD_NAME)


def test_with_watch_namespaces_the_operator_has_rights_there_and_nowhere_else(
        helm: Helm, control_plane: ControlPlane, make_namespace: Callable[[str], str],
        authorizer_for: Callable[[str, str], Authorizer]) -> None:
    ops, a, b, c = (make_namespace(prefix) for prefix in ("ops", "a", "b", "c"))
    release = f"kt-{uuid.uuid4().hex[:6]}"
    account = f"{release}-kubetasks-operator"
    helm.run("install", release, str(CHART), f"--namespace={ops}", "--set", f"watchNamespaces={{{a},{b}}}")
    try:
        # Roles and RoleBindings in a and b only.
        assert placed(control_plane, "roles,rolebindings", release=release) == {
            ("Role", a), ("Role", b), ("RoleBinding", a), ("RoleBinding", b)}

        def may(verb: str, resource: str, namespace: str | None) -> bool:
            return can_i(control_plane, verb, resource, namespace=namespace, account=account,
                         account_namespace=ops)
        for served in (a, b):
            assert may("get", "secrets", served)
            assert may("update", "deployments.apps", served)
            assert may("patch", "pods", served)
        for elsewhere in (c, ops):  # a third namespace, and the operator's own
            assert not may("get", "secrets", elsewhere)
            assert not may("update", "deployments.apps", elsewhere)
            assert not may("patch", "pods", elsewhere)
            assert not may("list", "taskqueues.kubetasks.io", elsewhere)
        assert not may("get", "secrets", None)  # nor across all namespaces
        assert may("list", "namespaces", None)
        assert may("watch", "customresourcedefinitions.apiextensions.k8s.io", None)

        # Every verb on every resource that matters: exactly the grants of the table.
        authorizer = authorizer_for(account, ops)
        assert authorizer.grants(NAMESPACED_RESOURCES, a) == NAMESPACED_GRANTS
        assert authorizer.grants(NAMESPACED_RESOURCES, b) == NAMESPACED_GRANTS
        assert authorizer.grants(NAMESPACED_RESOURCES, c) == {}
        assert authorizer.grants(NAMESPACED_RESOURCES, ops) == {}
        assert authorizer.grants(NAMESPACED_RESOURCES, "") == {}
        assert authorizer.grants(CLUSTER_RESOURCES, "") == CLUSTER_GRANTS
    finally:
        helm.run("uninstall", release, f"--namespace={ops}")
    assert not placed(control_plane, "roles,rolebindings", release=release)


def test_serving_every_namespace_the_operator_has_exactly_the_verbs_it_uses(
        helm: Helm, make_namespace: Callable[[str], str],
        authorizer_for: Callable[[str, str], Authorizer]) -> None:
    ops = make_namespace("ops")
    release = f"kt-{uuid.uuid4().hex[:6]}"
    helm.run("install", release, str(CHART), f"--namespace={ops}")
    try:
        authorizer = authorizer_for(f"{release}-kubetasks-operator", ops)
        anywhere = f"any-{uuid.uuid4().hex[:6]}"  # the rules hold in namespaces yet to come
        assert authorizer.grants(NAMESPACED_RESOURCES, anywhere) == NAMESPACED_GRANTS
        assert authorizer.grants(NAMESPACED_RESOURCES, "") == NAMESPACED_GRANTS
        assert authorizer.grants(CLUSTER_RESOURCES, "") == CLUSTER_GRANTS
    finally:
        helm.run("uninstall", release, f"--namespace={ops}")


def service_account_kubeconfig(control_plane: ControlPlane, account: str, namespace: str, path: Path) -> Path:
    """A kubeconfig for the control plane holding a token of the ServiceAccount, and nothing else."""
    token = control_plane.kubectl("create", "token", account, "-n", namespace, "--duration=1h").stdout.strip()
    config = yaml.safe_load(Path(control_plane.kubeconfig).read_text())
    config["users"] = [{"name": account, "user": {"token": token}}]
    for context in config["contexts"]:
        context["context"]["user"] = account
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.usefixtures("crd")
def test_the_operator_works_with_only_the_roles_of_watch_namespaces(
        *, helm: Helm, control_plane: ControlPlane, cluster: Cluster, namespace: str, dsn: str,
        make_namespace: Callable[[str], str], tmp_path: Path) -> None:
    """kopf and the operator, bound by nothing but the chart's namespaced RBAC, serve a TaskQueue
    from start to end: no call is refused (every call it makes is granted)."""
    ops = make_namespace("ops")
    release = f"kt-{uuid.uuid4().hex[:6]}"
    account = f"{release}-kubetasks-operator"
    helm.run("install", release, str(CHART), f"--namespace={ops}",
             "--set", f"watchNamespaces={{{namespace}}}")
    operator = OperatorProcess(control_plane, namespace, tmp_path)  # KUBETASKS_NAMESPACES=namespace
    operator.env["KUBECONFIG"] = str(service_account_kubeconfig(
        control_plane, account, ops, tmp_path / "operator-kubeconfig"))
    operator.start()
    try:
        cluster.create_taskqueue(taskqueue("roles", "roles", max_replicas=2))
        backend = backend_for(dsn)
        results = sample_tasks.short.using(backend=backend, queue_name="roles").enqueue_many(
            [(i,) for i in range(20)])
        wait_until(lambda: all(backend.get_result(r.id).status == TaskResultStatus.SUCCESSFUL
                               for r in results), timeout=90, what="the tasks run")
        wait_until(lambda: cluster.events("Scaled"), timeout=30, what="a Scaled event")
        assert cluster.status("roles")["queueName"] == "roles"
        backend.close()
        # Deleting the TaskQueue: kopf removes its finalizer; the Deployment goes with it.
        control_plane.kubectl("delete", "taskqueue", "roles", "-n", namespace, "--timeout=30s")
    finally:
        operator.stop()
        helm.run("uninstall", release, f"--namespace={ops}")
    log = operator.log()
    # An RBAC refusal reads "403 Forbidden" / "is forbidden" (UIDs may contain the digits 403);
    # kopf says "Not enough permissions" when it falls back.
    assert "forbidden" not in log.lower(), log[-4000:]
    assert "not enough permissions" not in log.lower(), log[-4000:]


def test_two_replicas_elect_a_leader_with_only_the_roles_of_watch_namespaces(
        *, helm: Helm, control_plane: ControlPlane, cluster: Cluster, namespace: str,
        make_namespace: Callable[[str], str], tmp_path: Path) -> None:
    """With replicaCount 2 the chart's namespaced RBAC lets the replicas create, watch and renew
    their KopfPeering: one serves the TaskQueue, the other stands by; nothing is refused."""
    ops = make_namespace("ops")
    release = f"kt-{uuid.uuid4().hex[:6]}"
    account = f"{release}-kubetasks-operator"
    helm.run("install", release, str(CHART), f"--namespace={ops}", "--set", "replicaCount=2",
             "--set", f"watchNamespaces={{{namespace}}}")
    env = {e["name"]: e.get("value") for e in operator_container(helm.template(
        "--set", "replicaCount=2", "--set", f"watchNamespaces={{{namespace}}}",
        release=release, namespace=ops))["env"]}
    kubeconfig = service_account_kubeconfig(control_plane, account, ops, tmp_path / "kubeconfig")

    def peers() -> set[str]:
        try:
            return set(cluster.custom.get_namespaced_custom_object(
                "kopf.dev", "v1", namespace, "kopfpeerings", str(env["KUBETASKS_PEERING"])
            ).get("status") or {})
        except kubernetes.client.exceptions.ApiException:
            return set()

    replicas = []
    try:
        for name in ("first", "second"):  # the second once the first is in: it is the younger
            (tmp_path / name).mkdir()
            replica = OperatorProcess(control_plane, namespace, tmp_path / name)
            replica.env.update(KUBECONFIG=str(kubeconfig), POD_ID=name,
                               KUBETASKS_PEERING=str(env["KUBETASKS_PEERING"]),
                               KUBETASKS_PEERING_LIFETIME=str(env["KUBETASKS_PEERING_LIFETIME"]))
            replica.start()
            replicas.append(replica)
            wait_until(lambda n=name: n in peers(), timeout=60, what=f"{name} in the KopfPeering")
        cluster.create_taskqueue(taskqueue("elected", "elected", max_replicas=2))
        # The Deployment exists a moment before the leader logs it.
        wait_until(lambda: '"message": "reconciled"' in replicas[0].log(), timeout=60,
                   what="the older replica to reconcile the TaskQueue")
        assert cluster.replicas("elected") == 0
        assert peers() == {"first", "second"}
        # Read before they stop: once the first leaves, the second takes over.
        assert '"message": "reconciled"' not in replicas[1].log(), "the younger stands by"
    finally:
        for replica in replicas:
            replica.stop()
        helm.run("uninstall", release, f"--namespace={ops}")
    for log in (replica.log() for replica in replicas):
        assert "forbidden" not in log.lower(), log[-4000:]
        assert "not enough permissions" not in log.lower(), log[-4000:]


# -- the migration hook on the real control plane and the local kubelet --

@pytest.fixture
def empty_database(postgres: LocalPostgres) -> Iterator[str]:
    """A database without the kubetasks schema."""
    name = f"m_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield postgres.dsn.rsplit("/", 1)[0] + f"/{name}"
    drop_database(postgres, name)


def applied_migrations(dsn: str) -> list[int]:
    with psycopg.connect(dsn) as conn:
        if conn.execute("SELECT to_regclass('kubetasks_tasks')").fetchone() == (None,):
            return []
        return [row[0] for row in conn.execute("SELECT version FROM kubetasks_migrations ORDER BY version")]


def migration_logs(kubelet: LocalKubelet, namespace: str, release: str) -> list[str]:
    """What the migration pods printed, oldest first (the logs outlive the pods)."""
    pods = sorted((kubelet.log_dir / namespace).glob(f"{release}-kubetasks-migrate-*"),
                  key=lambda path: path.stat().st_mtime)
    return [kubelet.pod_log(namespace, pod.name, "migrate") for pod in pods]


def test_the_migration_hook_migrates_the_database_before_the_operator_is_installed(
        *, helm: Helm, control_plane: ControlPlane, cluster: Cluster, namespace: str,
        empty_database: str, local_kubelet: LocalKubelet) -> None:
    cluster.create_secret("app-db", empty_database)
    assert applied_migrations(empty_database) == []
    release = f"kt-{uuid.uuid4().hex[:6]}"
    values = ("--set", "migrations.enabled=true", "--set", "migrations.databaseSecret.name=app-db",
              "--set", f"watchNamespaces={{{namespace}}}")
    try:
        installed = helm.run("install", release, str(CHART), f"--namespace={namespace}", *values,
                             "--timeout=120s")
        assert f"Secret {namespace}/app-db was migrated before this install." in installed.stdout
        everything = [m.version for m in available()]
        assert applied_migrations(empty_database) == everything
        [log] = migration_logs(local_kubelet, namespace, release)
        assert f"applied migrations {everything}" in log
        # Succeeded, the hook's Job is deleted; the operator was installed after it.
        assert not objects(control_plane, "jobs", release=release, namespace=namespace)
        assert objects(control_plane, "deployments", release=release, namespace=namespace)

        # An upgrade migrates again first: nothing left to do.
        helm.run("upgrade", release, str(CHART), f"--namespace={namespace}", *values, "--timeout=120s")
        logs = migration_logs(local_kubelet, namespace, release)
        assert len(logs) == 2 and "schema is up to date" in logs[-1]
        assert applied_migrations(empty_database) == everything
    finally:
        helm.run("uninstall", release, f"--namespace={namespace}")


def test_a_failed_migration_installs_nothing(
        *, helm: Helm, control_plane: ControlPlane, cluster: Cluster, namespace: str,
        empty_database: str, local_kubelet: LocalKubelet) -> None:
    # A database that refuses the connection: the hook fails, so does the install.
    unreachable = empty_database.rsplit("/", 1)[0].rsplit(":", 1)[0] + ":1/nowhere"
    cluster.create_secret("broken-db", unreachable)
    release = f"kt-{uuid.uuid4().hex[:6]}"
    failed = helm.run("install", release, str(CHART), f"--namespace={namespace}",
                      "--set", "migrations.enabled=true", "--set", "migrations.databaseSecret.name=broken-db",
                      "--set", "migrations.backoffLimit=0", "--timeout=120s", check=False)
    try:
        assert failed.returncode != 0
        assert "pre-install" in failed.stderr and "failed" in failed.stderr, failed.stderr
        assert not objects(control_plane, "deployments", release=release, namespace=namespace)
        # The failed Job stays for its logs.
        assert set(objects(control_plane, "jobs", release=release, namespace=namespace)) == {
            ("Job", f"{release}-kubetasks-migrate")}
        [log] = migration_logs(local_kubelet, namespace, release)
        assert "refused" in log.lower(), log  # the cause, in the Job's log
    finally:
        helm.run("uninstall", release, f"--namespace={namespace}", check=False)


# -- the values of KEDA's and cert-manager's charts; the Prometheus operator's objects --

DIGEST = "sha256:" + "ab" * 32
# Every optional object and new value on at once.
EVERYTHING = (
    "--set", f"image.digest={DIGEST}", "--set", "priorityClassName=system-cluster-critical",
    "--set", "podLabels.team=payments", "--set-json", 'extraArgs=["--verbose"]',
    "--set", "podDisruptionBudget.enabled=true", "--set", "serviceMonitor.enabled=true",
    "--set", "serviceMonitor.labels.release=prom", "--set", "podMonitor.enabled=true",
    "--set", "prometheusRule.enabled=true", "--set", "grafanaDashboard.enabled=true",
    "--set", "global.imageRegistry=mirror.example:5000",
    "--set-json", 'global.imagePullSecrets=[{"name": "mirror"}]',
)
MONITORING = ("ServiceMonitor", "PodMonitor", "PrometheusRule")
RULES_DASHBOARD = REPO / "charts" / "kubetasks" / "dashboards" / "kubetasks.json"


def test_the_chart_passes_helm_lint_with_every_value_on(helm: Helm) -> None:
    linted = helm.run("lint", "--strict", str(CHART), *EVERYTHING, *migration_values())
    assert "1 chart(s) linted, 0 chart(s) failed" in linted.stdout


def test_the_optional_objects_are_off_by_default(helm: Helm) -> None:
    assert kinds(helm.template()) == {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Service",
                                      "Deployment"}
    pod = only(helm.template(), "Deployment")["spec"]["template"]["spec"]
    assert "priorityClassName" not in pod and "imagePullSecrets" not in pod
    assert "args" not in pod["containers"][0]


def test_the_operator_pod_follows_the_new_values(helm: Helm) -> None:
    documents = helm.template(*EVERYTHING, *migration_values(), release="kt", namespace="ops")
    deployment = only(documents, "Deployment")
    pod = deployment["spec"]["template"]
    # podLabels beside the chart's labels, which win: the selector still selects the pod.
    assert pod["metadata"]["labels"] == {**chart_labels("kt"), "team": "payments"}
    assert only(helm.template("--set", "podLabels.app\\.kubernetes\\.io/component=x"), "Deployment")[
        "spec"]["template"]["metadata"]["labels"] == chart_labels("kt")
    assert pod["spec"]["priorityClassName"] == "system-cluster-critical"
    # global.imageRegistry replaces the registry host; the digest wins over the tag.
    assert operator_container(documents)["image"] == f"mirror.example:5000/kubetasks/operator@{DIGEST}"
    assert operator_container(documents)["args"] == ["--verbose"]
    assert pod["spec"]["imagePullSecrets"] == [{"name": "mirror"}]
    job = only(documents, "Job")["spec"]["template"]["spec"]
    assert job["containers"][0]["image"] == f"mirror.example:5000/kubetasks/operator@{DIGEST}"
    assert job["priorityClassName"] == "system-cluster-critical"
    assert job["imagePullSecrets"] == [{"name": "mirror"}]
    assert deployment["spec"]["replicas"] == 1

    # global and own pull secrets, in that order, once each; a registry-less repository gets one.
    both = only(helm.template(
        "--set-json", 'global.imagePullSecrets=[{"name": "a"}, {"name": "b"}]',
        "--set-json", 'imagePullSecrets=[{"name": "b"}, {"name": "c"}]',
        "--set", "global.imageRegistry=mirror.example", "--set", "image.repository=team/operator",
        "--set", "image.tag=2.0"), "Deployment")["spec"]["template"]["spec"]
    assert both["imagePullSecrets"] == [{"name": "a"}, {"name": "b"}, {"name": "c"}]
    assert both["containers"][0]["image"] == "mirror.example/team/operator:2.0"
    # The migration image: its own tag drops the operator's digest.
    job = only(helm.template(*migration_values("db", "--set", f"image.digest={DIGEST}",
                                               "--set", "migrations.image.tag=3.0")), "Job")
    assert job["spec"]["template"]["spec"]["containers"][0]["image"] == "ghcr.io/kubetasks/operator:3.0"


def test_the_pod_disruption_budget_lets_the_single_operator_be_drained(helm: Helm) -> None:
    pdb = only(helm.template("--set", "podDisruptionBudget.enabled=true"), "PodDisruptionBudget")
    assert pdb["metadata"]["name"] == "kt-kubetasks-operator"
    assert pdb["spec"] == {"selector": {"matchLabels": only(helm.template(), "Deployment")["spec"][
        "selector"]["matchLabels"]}, "maxUnavailable": 1}
    assert only(helm.template("--set", "podDisruptionBudget.enabled=true",
                              "--set", "podDisruptionBudget.minAvailable=50%"),
                "PodDisruptionBudget")["spec"]["minAvailable"] == "50%"


def test_two_replicas_elect_a_leader_in_a_peering_object_they_may_use(helm: Helm) -> None:
    documents = helm.template("--set", "replicaCount=2", "--set", "podDisruptionBudget.enabled=true",
                              release="kt", namespace="ops")
    deployment = only(documents, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    pod = deployment["spec"]["template"]["spec"]
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    assert env["KUBETASKS_PEERING"]["value"] == deployment["metadata"]["name"]
    assert env["KUBETASKS_PEERING_LIFETIME"]["value"] == "30"
    assert env["POD_ID"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    [term] = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["labelSelector"]["matchLabels"] == deployment["spec"]["selector"][
        "matchLabels"]
    assert only(documents, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    grants = grants_of(only(documents, "ClusterRole")["rules"])
    assert grants[("kopf.dev", "clusterkopfpeerings", "")] == {"list", "watch", "patch", "create"}
    # Serving named namespaces, the election is in each of them: a Role, no cluster-wide grant.
    scoped = helm.template("--set", "replicaCount=2", "--set", "watchNamespaces={a,b}")
    assert ("kopf.dev", "clusterkopfpeerings", "") not in grants_of(only(scoped, "ClusterRole")["rules"])
    for role in of_kind(scoped, "Role"):
        assert grants_of(role["rules"])[("kopf.dev", "kopfpeerings", "")] == {
            "list", "watch", "patch", "create"}
    # One replica elects nothing: no peering, no rights to it.
    single = helm.template()
    assert "KUBETASKS_PEERING" not in env_of(operator_container(single))
    assert not any(group == "kopf.dev" for group, _, _ in grants_of(only(single, "ClusterRole")["rules"]))


def test_the_monitors_scrape_the_operator_service_and_the_worker_pods(helm: Helm) -> None:
    documents = helm.template(*EVERYTHING, "--set", "watchNamespaces={a,b}", release="kt", namespace="ops")
    service = only(documents, "Service")
    monitor = only(documents, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["ops"]}
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["port"] == service["spec"]["ports"][0]["name"] == "metrics"
    assert endpoint["honorLabels"] is True  # the series' namespace is the TaskQueue's
    pods = only(documents, "PodMonitor")
    assert pods["spec"]["namespaceSelector"] == {"matchNames": ["a", "b"]}
    [endpoint] = pods["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] == "http" and endpoint["path"] == "/metrics"
    assert endpoint["relabelings"][0]["targetLabel"] == "taskqueue"
    assert only(helm.template("--set", "podMonitor.enabled=true"), "PodMonitor")["spec"][
        "namespaceSelector"] == {"any": True}
    # The labels the PodMonitor selects and relabels are those the operator gives worker pods.
    from kubetasks_operator.spec import MANAGED_BY, TASKQUEUE_LABEL
    assert pods["spec"]["selector"]["matchLabels"] == MANAGED_BY
    assert pods["spec"]["selector"]["matchExpressions"] == [{"key": TASKQUEUE_LABEL, "operator": "Exists"}]
    assert endpoint["relabelings"][0]["sourceLabels"] == [
        "__meta_kubernetes_pod_label_" + TASKQUEUE_LABEL.replace(".", "_").replace("/", "_")]
    dashboard = only(documents, "ConfigMap")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["kubetasks.json"]) == json.loads(RULES_DASHBOARD.read_text())


@pytest.mark.parametrize(("values", "named"), [
    (("--set", "image.digest=latest"), "'/image/digest'"),
    (("--set", "migrations.image.digest=sha1:abc"), "'/migrations/image/digest'"),
    (("--set", "global.storageClass=fast"), "'storageClass' not allowed"),
    (("--set", "global.imageRegistry=https://mirror"), "'/global/imageRegistry'"),
    (("--set", "replicaCount=2", "--set", "podDisruptionBudget.enabled=true",
      "--set", "podDisruptionBudget.minAvailable=2"), "minAvailable: 2 with replicaCount: 2 would block"),
    (("--set", "leaderElection.lifetimeSeconds=5"), "'/leaderElection/lifetimeSeconds'"),
    (("--set", "replicaCount=0"), "'/replicaCount'"),
    (("--set", "priorityClassName=High_Priority"), "'/priorityClassName'"),
    (("--set", "podLabels.team=a b"), "'/podLabels/team'"),
    (("--set-json", "extraArgs=[1]"), "'/extraArgs/0'"),
    (("--set", "podDisruptionBudget.enabled=true", "--set", "podDisruptionBudget.minAvailable=1",
      "--set", "podDisruptionBudget.maxUnavailable=1"), "set minAvailable or maxUnavailable, not both"),
    (("--set", "podDisruptionBudget.minAvailable=half"), "'/podDisruptionBudget/minAvailable'"),
    (("--set", "serviceMonitor.enabled=true", "--set", "metrics.service.enabled=false"),
     "serviceMonitor.enabled: the ServiceMonitor scrapes the metrics Service"),
    (("--set", "serviceMonitor.interval=30"), "'/serviceMonitor/interval'"),
    (("--set", "podMonitor.namespace=Mon"), "'/podMonitor/namespace'"),
    (("--set", "podMonitor.port=http"), "'port' not allowed"),
    (("--set", "prometheusRule.queueStuckMinutes=0"), "'/prometheusRule/queueStuckMinutes'"),
    (("--set-json", 'prometheusRule.additionalRules=[{"alert": "X"}]'), "missing property 'expr'"),
    (("--set", "grafanaDashboard.enable=true"), "'enable' not allowed"),
])
def test_wrong_new_values_are_refused_with_the_value_named(
        helm: Helm, values: tuple[str, ...], named: str) -> None:
    error = template_fails(helm, *values)
    assert named in error, error


# The Prometheus operator's CRDs, as little of them as the API server needs to accept the objects.
MONITORING_CRDS = [
    {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
     "metadata": {"name": f"{plural}.monitoring.coreos.com"},
     "spec": {"group": "monitoring.coreos.com", "scope": "Namespaced",
              "names": {"kind": kind, "plural": plural, "singular": kind.lower(), "listKind": f"{kind}List"},
              "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                  "type": "object", "properties": {"spec": {
                      "type": "object", "x-kubernetes-preserve-unknown-fields": True}}}}}]}}
    for kind, plural in (("ServiceMonitor", "servicemonitors"), ("PodMonitor", "podmonitors"),
                         ("PrometheusRule", "prometheusrules"))
]


@pytest.fixture(scope="module")
def monitoring_crds(control_plane: ControlPlane) -> None:
    control_plane.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(MONITORING_CRDS))
    for crd in MONITORING_CRDS:
        control_plane.kubectl("wait", "--for=condition=Established", "--timeout=30s",
                              f"crd/{crd['metadata']['name']}")


@pytest.mark.usefixtures("monitoring_crds")
def test_the_api_server_accepts_every_new_object_in_a_server_side_dry_run(
        helm: Helm, control_plane: ControlPlane, namespace: str) -> None:
    documents = helm.template(*EVERYTHING, *migration_values(), "--set", f"watchNamespaces={{{namespace}}}",
                              release="kt", namespace=namespace)
    assert {"PodDisruptionBudget", "ConfigMap", *MONITORING} <= kinds(documents)
    applied = control_plane.kubectl("apply", "--dry-run=server", "-n", namespace, "-f", "-",
                                    input=yaml.safe_dump_all(documents), check=False)
    assert applied.returncode == 0, applied.stderr
    for document in documents:
        line = f"{document['kind'].lower()}"
        assert any(row.startswith(line) and row.endswith("(server dry run)")
                   and f"/{document['metadata']['name']} " in row
                   for row in applied.stdout.splitlines()), (document["kind"], applied.stdout)


# -- the alerts and the dashboard read the metrics the code exports --

METRIC_CONSTRUCTOR = re.compile(
    r"\b(Counter|Gauge|Histogram|Summary|Info)\(\s*\"(kubetasks_[a-z0-9_]+)\"", re.MULTILINE)
# What prometheus_client serves for each kind of metric.
SUFFIXES = {"Counter": ("_total",), "Gauge": ("",), "Histogram": ("_bucket", "_sum", "_count"),
            "Summary": ("_sum", "_count"), "Info": ("_info",)}
# Series of others the alerts read: Prometheus' own and kube-state-metrics'.
FOREIGN = {"up", "kube_pod_container_status_restarts_total"}
PROMQL_NAME = re.compile(r"\b(kube[a-z0-9_]*|up)\b(?=\s*[{\[)])")


def exported_metrics() -> set[str]:
    """The series names the worker and the operator serve, from their prometheus_client calls."""
    names: set[str] = set()
    for source in [*(REPO / "src").rglob("*.py"), *(REPO / "operator").rglob("*.py")]:
        for kind, name in METRIC_CONSTRUCTOR.findall(source.read_text()):
            base = name.removesuffix("_total") if kind == "Counter" else name
            names.update(base + suffix for suffix in SUFFIXES[kind])
    return names


def metric_names(expression: str) -> set[str]:
    return set(PROMQL_NAME.findall(expression))


def test_exported_metrics_are_found_in_the_code() -> None:
    exported = exported_metrics()
    # Both sides, as their modules spell them (a guard on the regular expression above).
    assert {"kubetasks_operator_backlog", "kubetasks_operator_overdue",
            "kubetasks_worker_tasks_succeeded_total",
            "kubetasks_worker_task_duration_seconds_bucket"} <= exported


def rules_of(helm: Helm, *options: str) -> list[Document]:
    rule = only(helm.template("--set", "prometheusRule.enabled=true", *options), "PrometheusRule")
    [group] = rule["spec"]["groups"]
    rules: list[Document] = group["rules"]
    return rules


def test_the_alerts_read_only_metrics_that_are_exported(helm: Helm) -> None:
    rules = rules_of(helm)
    assert [r["alert"] for r in rules] == [
        "KubetasksQueueStuck", "KubetasksDeadlinesMissed", "KubetasksDeadlinesAtRisk",
        "KubetasksWorkersCrashLooping", "KubetasksOperatorDown", "KubetasksOperatorErrors"]
    exported = exported_metrics() | FOREIGN
    for rule in rules:
        used = metric_names(rule["expr"])
        assert used and used <= exported, (rule["alert"], used - exported)
    by_name = {r["alert"]: r for r in rules}
    assert "kubetasks_operator_overdue" in by_name["KubetasksDeadlinesMissed"]["expr"]
    assert "kubetasks_operator_deadlines_at_risk" in by_name["KubetasksDeadlinesAtRisk"]["expr"]
    assert "kubetasks_operator_errors_total" in by_name["KubetasksOperatorErrors"]["expr"]
    assert by_name["KubetasksOperatorDown"]["expr"] == (
        'absent(up{job="kt-kubetasks-operator-metrics", namespace="ops"} == 1)')
    stuck = by_name["KubetasksQueueStuck"]["expr"]
    assert "[15m]" in stuck and ">= 900" in stuck
    stuck = rules_of(helm, "--set", "prometheusRule.queueStuckMinutes=40")[0]["expr"]
    assert "[40m]" in stuck and ">= 2400" in stuck


def test_the_dashboard_reads_only_metrics_that_are_exported() -> None:
    dashboard = json.loads(RULES_DASHBOARD.read_text())
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    expressions += [v["query"]["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    used = set().union(*(metric_names(e) for e in expressions))
    assert used <= exported_metrics() | FOREIGN, used - exported_metrics()
    assert {"kubetasks_operator_backlog", "kubetasks_operator_running", "kubetasks_operator_overdue",
            "kubetasks_operator_desired_replicas", "kubetasks_operator_replicas",
            "kubetasks_operator_oldest_ready_age_seconds", "kubetasks_operator_deadlines_at_risk",
            "kubetasks_operator_errors_total", "kubetasks_worker_slots_in_use", "kubetasks_worker_slots",
            "kubetasks_worker_build_info", "kubetasks_worker_tasks_succeeded_total",
            "kubetasks_worker_task_duration_seconds_bucket"} <= used
    process = {name for e in expressions for name in re.findall(r"\b(process_[a-z_]+)\b", e)}
    assert process == {"process_cpu_seconds_total", "process_resident_memory_bytes"}
    # Every panel and target has an id and a ref Grafana keeps them by.
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    for panel in dashboard["panels"]:
        assert len({t["refId"] for t in panel["targets"]}) == len(panel["targets"]), panel["title"]


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool is missing: apt-get install --no-install-recommends prometheus")
    return found


def test_promtool_accepts_the_rules(helm: Helm, tmp_path: Path) -> None:
    rule = only(helm.template(*EVERYTHING, "--set", "watchNamespaces={a,b}"), "PrometheusRule")
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump(rule["spec"]))
    checked = subprocess.run([promtool(), "check", "rules", str(rules)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 6 rules found" in checked.stdout, checked.stdout


QUEUE = 'namespace="shop", taskqueue="emails"'
BUSY = 'namespace="shop", taskqueue="reports"'
# emails: its oldest task waits on and no worker claims: stuck, deadlines at risk then missed,
# the database failing. reports: as old a backlog, but its workers keep claiming: busy, not stuck.
SERIES = [
    {"series": f"kubetasks_operator_oldest_ready_age_seconds{{{QUEUE}}}", "values": "0+60x40"},
    {"series": f"kubetasks_operator_oldest_ready_age_seconds{{{BUSY}}}", "values": "0+60x40"},
    {"series": f'kubetasks_worker_tasks_claimed_total{{{BUSY}, queue="reports"}}', "values": "0+1x40"},
    {"series": f"kubetasks_operator_overdue{{{QUEUE}}}", "values": "0 0 2x38"},
    {"series": f"kubetasks_operator_overdue{{{BUSY}}}", "values": "0x40"},
    {"series": f"kubetasks_operator_deadlines_at_risk{{{QUEUE}}}", "values": "0 3x39"},
    {"series": f"kubetasks_operator_deadlines_at_risk{{{BUSY}}}", "values": "0x40"},
    {"series": f'kubetasks_operator_errors_total{{{QUEUE}, kind="database"}}', "values": "0+1x40"},
    {"series": f'kubetasks_operator_errors_total{{{BUSY}, kind="kubernetes_api"}}', "values": "2x40"},
    {"series": 'kube_pod_container_status_restarts_total{namespace="shop", '
               'pod="emails-worker-7d9f8c-x2x4z", container="worker"}', "values": "0+1x40"},
    {"series": 'kube_pod_container_status_restarts_total{namespace="shop", '
               'pod="web-7d9f8c-x2x4z", container="web"}', "values": "0+1x40"},
    {"series": 'up{job="kt-kubetasks-operator-metrics", namespace="ops"}', "values": "1x10 0x30"},
]
EMAILS = {"namespace": "shop", "taskqueue": "emails"}
ALERTS = [
    {"eval_time": "20m", "alertname": "KubetasksQueueStuck", "exp_alerts": [{
        "exp_labels": {"severity": "warning", **EMAILS},
        "exp_annotations": {
            "summary": "TaskQueue shop/emails has tasks waiting and started none for 15m",
            "description": "Its oldest ready task has waited 20m 0s and its workers claimed no task "
                           "in the last 15m. See `kubectl -n shop describe taskqueue emails` and "
                           "the worker pods' logs."}}]},
    {"eval_time": "10m", "alertname": "KubetasksQueueStuck", "exp_alerts": []},
    {"eval_time": "10m", "alertname": "KubetasksDeadlinesMissed", "exp_alerts": [{
        "exp_labels": {"severity": "warning", **EMAILS},
        "exp_annotations": {
            "summary": "TaskQueue shop/emails has tasks past their deadline",
            "description": "2 unfinished tasks are past their deadline. The queue may be at "
                           "maxReplicas, or its workers slower than the deadlines assume."}}]},
    {"eval_time": "5m", "alertname": "KubetasksDeadlinesAtRisk", "exp_alerts": []},
    {"eval_time": "15m", "alertname": "KubetasksDeadlinesAtRisk", "exp_alerts": [{
        "exp_labels": {"severity": "info", **EMAILS},
        "exp_annotations": {
            "summary": "TaskQueue shop/emails will miss deadlines at its current size",
            "description": "3 ready tasks cannot finish by their deadline at the pace of the ready "
                           "workers, and scaling has not fixed it for 10 minutes. Compare its "
                           "desired and ready replicas with maxReplicas."}}]},
    {"eval_time": "20m", "alertname": "KubetasksWorkersCrashLooping", "exp_alerts": [{
        "exp_labels": {"severity": "warning", "namespace": "shop",
                       "pod": "emails-worker-7d9f8c-x2x4z"},
        "exp_annotations": {
            "summary": "Worker pod shop/emails-worker-7d9f8c-x2x4z is restarting",
            "description": "Its worker container restarted 15 times in 15 minutes "
                           "(kube-state-metrics). See `kubectl -n shop logs "
                           "emails-worker-7d9f8c-x2x4z --previous`."}}]},
    {"eval_time": "12m", "alertname": "KubetasksOperatorDown", "exp_alerts": []},
    {"eval_time": "20m", "alertname": "KubetasksOperatorDown", "exp_alerts": [{
        "exp_labels": {"severity": "critical", "namespace": "ops"},
        "exp_annotations": {
            "summary": "The kubetasks operator in ops is down",
            "description": "No TaskQueue is scaled, and tasks of dead workers are not put "
                           "back, until it runs again. See `kubectl -n ops get pods "
                           "-l app.kubernetes.io/component=operator`."}}]},
    {"eval_time": "10m", "alertname": "KubetasksOperatorErrors", "exp_alerts": []},
    {"eval_time": "25m", "alertname": "KubetasksOperatorErrors", "exp_alerts": [{
        "exp_labels": {"severity": "warning", "kind": "database", **EMAILS},
        "exp_annotations": {
            "summary": "The kubetasks operator keeps failing on TaskQueue shop/emails (database)",
            "description": "database errors for 15 minutes on end. See `kubectl -n shop describe "
                           "taskqueue emails` for the failing condition and its Events."}}]},
]


def test_the_alerts_fire_on_the_series_they_describe(helm: Helm, tmp_path: Path) -> None:
    """promtool's rule unit tests: the alerts fire on synthetic series, and stay quiet on healthy ones."""
    rule = only(helm.template("--set", "prometheusRule.enabled=true", release="kt", namespace="ops"),
                "PrometheusRule")
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rule["spec"]))
    tests = {"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": [{
        "interval": "1m", "input_series": SERIES, "alert_rule_test": ALERTS}]}
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests))
    tested = subprocess.run([promtool(), "test", "rules", "tests.yaml"], cwd=tmp_path,
                            capture_output=True, text=True)
    assert tested.returncode == 0, tested.stdout + tested.stderr
