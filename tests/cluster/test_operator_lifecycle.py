"""The operator's objects over their life: spec changes, deletion, a database that is down,
a worker container that restarts, the shipped manifests, and the operator under its own RBAC."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml
from localcluster import sample_tasks as queue_tasks
from localcluster.controlplane import ControlPlane
from localcluster.operator import REPO, Cluster, OperatorProcess, backend_for, taskqueue
from localcluster.polling import wait_until

from kubetasks import TaskResultStatus

pytestmark = [pytest.mark.cluster, pytest.mark.usefixtures("local_kubelet", "crd")]


def worker_env(cluster: Cluster, name: str) -> dict[str, Any]:
    spec = cluster.deployment(name)["spec"]["template"]["spec"]
    return {e["name"]: e for e in spec["containers"][0].get("env", [])}


def test_a_spec_change_rolls_the_deployment_and_removed_fields_go(
        cluster: Cluster, operator: OperatorProcess) -> None:
    body = taskqueue("roll", "roll", min_replicas=1, max_replicas=1)
    body["spec"]["worker"]["env"].append({"name": "FEATURE_FLAG", "value": "on"})
    body["spec"]["worker"]["resources"] = {"limits": {"memory": "256Mi"}}
    cluster.create_taskqueue(body)
    wait_until(lambda: "FEATURE_FLAG" in worker_env(cluster, "roll"), timeout=30,
               what="the Deployment with the env var")
    first_generation = cluster.deployment("roll")["metadata"]["generation"]

    env = [e for e in body["spec"]["worker"]["env"] if e["name"] != "FEATURE_FLAG"]
    cluster.custom.patch_namespaced_custom_object(
        "kubetasks.io", "v1alpha1", cluster.namespace, "taskqueues", "roll",
        {"spec": {"worker": {"env": env, "resources": None, "concurrency": 3}}},
        _content_type="application/merge-patch+json")

    wait_until(lambda: "FEATURE_FLAG" not in worker_env(cluster, "roll"), timeout=30,
               what="the env var removed from the Deployment")
    deployment = cluster.deployment("roll")
    worker = deployment["spec"]["template"]["spec"]["containers"][0]
    assert "resources" not in worker or worker["resources"] == {}
    assert worker["args"][worker["args"].index("--concurrency") + 1] == "3"
    assert deployment["metadata"]["generation"] > first_generation
    assert deployment["spec"]["replicas"] == 1
    wait_until(lambda: cluster.status("roll").get("observedGeneration")
               == cluster.taskqueue("roll")["metadata"]["generation"], timeout=30,
               what="status.observedGeneration to follow the spec")


def test_deleting_the_taskqueue_deletes_its_deployment(
        cluster: Cluster, operator: OperatorProcess) -> None:
    cluster.create_taskqueue(taskqueue("doomed", "doomed"))
    wait_until(lambda: cluster.replicas("doomed") is not None, timeout=30, what="the Deployment")
    owners = cluster.deployment("doomed")["metadata"]["ownerReferences"]
    assert [(o["kind"], o["name"], o.get("controller")) for o in owners] == [
        ("TaskQueue", "doomed", True)]

    cluster.custom.delete_namespaced_custom_object("kubetasks.io", "v1alpha1", cluster.namespace,
                                                   "taskqueues", "doomed")
    wait_until(lambda: cluster.replicas("doomed") is None, timeout=60,
               what="the garbage collector to delete the Deployment")
    with pytest.raises(kubernetes.client.exceptions.ApiException):
        cluster.taskqueue("doomed")


def get_tq(control_plane: ControlPlane, namespace: str, name: str) -> dict[str, str]:
    """The row of ``kubectl get tq``, by column."""
    header, row = control_plane.kubectl("get", "tq", name, "-n", namespace).stdout.splitlines()
    # Columns are aligned on the header's words; an empty cell is blank, so cut by position.
    starts = [m.start() for m in re.finditer(r"\S+", header)]
    ends = [*starts[1:], None]
    return {header[a:b].strip(): row[a:b].strip() for a, b in zip(starts, ends, strict=True)}


def test_a_database_that_is_down_shows_a_condition_and_an_event(
        control_plane: ControlPlane, cluster: Cluster, operator: OperatorProcess) -> None:
    from localcluster.postgres import free_port

    cluster.create_secret("down", f"postgresql://nobody@127.0.0.1:{free_port()}/none?connect_timeout=1")
    cluster.create_taskqueue(taskqueue("downq", "downq", secret="down"))

    condition = wait_until(
        lambda: (c := cluster.condition("downq", "DatabaseReachable")) and c["status"] == "False" and c,
        timeout=60, what="DatabaseReachable=False")
    assert "127.0.0.1" in condition["message"] or "connect" in condition["message"]
    events = wait_until(lambda: cluster.events("DatabaseUnreachable"), timeout=30, what="an Event")
    assert events[0]["type"] == "Warning"
    assert events[0]["source"]["component"] == "kubetasks-operator"
    assert events[0]["reportingComponent"] == "kubetasks-operator"
    assert operator.process is not None and operator.process.poll() is None
    row = wait_until(lambda: (r := get_tq(control_plane, cluster.namespace, "downq"))
                     and r["STATUS"] == "DatabaseUnreachable" and r, timeout=30,
                     what="kubectl get tq to show the database unreachable")
    assert row["READY"] == "False"
    assert row["QUEUE"] == "downq"


def worker_pid(pod: str) -> int:
    """The pid of the worker process of ``pod`` (a local process here)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if f"POD_NAME={pod}".encode() in environ and b"worker" in cmdline:
            return int(entry.name)
    raise LookupError(f"no worker process for pod {pod}")


def test_the_shipped_manifests_are_accepted(control_plane: ControlPlane, namespace: str) -> None:
    applied = control_plane.kubectl("apply", "--dry-run=server", "-n", namespace,
                                    "-f", str(REPO / "examples" / "taskqueue.yaml"))
    assert "taskqueue.kubetasks.io/emails created (server dry run)" in applied.stdout
    documents = list(yaml.safe_load_all((REPO / "operator" / "deploy.yaml").read_text()))
    kinds = [d["kind"] for d in documents]
    assert kinds == ["Namespace", "Deployment"]
    assert documents[1]["spec"]["replicas"] == 1
    assert documents[1]["spec"]["strategy"] == {"type": "Recreate"}
    control_plane.kubectl("apply", "-f", "-", input=json.dumps(documents[0]))
    applied = control_plane.kubectl("apply", "--dry-run=server", "-f", str(REPO / "operator"))
    assert "deployment.apps/kubetasks-operator created (server dry run)" in applied.stdout
    assert ("clusterrole.rbac.authorization.k8s.io/kubetasks-operator created (server dry run)"
            in applied.stdout)


@pytest.fixture
def operator_identity(control_plane: ControlPlane, tmp_path: Path) -> Iterator[Path]:
    """A kubeconfig holding a token of the operator's ServiceAccount, bound by operator/rbac.yaml."""
    control_plane.kubectl("apply", "-f", str(REPO / "operator" / "deploy.yaml"), "--dry-run=client")
    control_plane.kubectl("create", "namespace", "kubetasks-system", check=False)
    control_plane.kubectl("apply", "-f", str(REPO / "operator" / "rbac.yaml"))
    token = control_plane.kubectl("create", "token", "kubetasks-operator", "-n", "kubetasks-system",
                                  "--duration=1h").stdout.strip()
    admin = yaml.safe_load(Path(control_plane.kubeconfig).read_text())
    admin["users"] = [{"name": "operator", "user": {"token": token}}]
    for context in admin["contexts"]:
        context["context"]["user"] = "operator"
    path = tmp_path / "operator-kubeconfig"
    path.write_text(yaml.safe_dump(admin))
    yield path


def test_the_operator_works_with_only_its_rbac(
        *, control_plane: ControlPlane, cluster: Cluster, namespace: str, dsn: str, tmp_path: Path,
        operator_identity: Path) -> None:
    denied = subprocess.run(["kubectl", f"--kubeconfig={operator_identity}", "get", "secrets",
                             "-n", namespace], capture_output=True, text=True)
    assert denied.returncode != 0 and "forbidden" in denied.stderr.lower()  # get, never list

    operator = OperatorProcess(control_plane, namespace, tmp_path)
    operator.env["KUBECONFIG"] = str(operator_identity)
    operator.start()
    try:
        cluster.create_taskqueue(taskqueue("rbac", "rbac", max_replicas=2))
        backend = backend_for(dsn)
        results = queue_tasks.short.using(backend=backend, queue_name="rbac").enqueue_many(
            [(i,) for i in range(20)])
        wait_until(lambda: all(backend.get_result(r.id).status == TaskResultStatus.SUCCESSFUL
                               for r in results), timeout=90, what="the tasks run")
        wait_until(lambda: cluster.events("Scaled"), timeout=30, what="a Scaled event")
        assert cluster.status("rbac")["queueName"] == "rbac"
        backend.close()
    finally:
        operator.stop()
    log = operator.log()
    # An RBAC refusal reads "403 Forbidden" / "is forbidden" (UIDs may contain the digits 403).
    assert "forbidden" not in log.lower(), log[-4000:]


def test_a_deployment_deleted_by_hand_is_made_again(
        cluster: Cluster, operator: OperatorProcess, control_plane: ControlPlane) -> None:
    cluster.create_taskqueue(taskqueue("again", "again"))
    first = wait_until(lambda: cluster.deployment("again")["metadata"]["uid"], timeout=30,
                       what="the Deployment")
    control_plane.kubectl("delete", "deployment", "again-worker", "-n", cluster.namespace)

    second = wait_until(lambda: cluster.deployment("again")["metadata"]["uid"] != first
                        and cluster.deployment("again")["metadata"]["uid"], timeout=30,
                        what="the Deployment made again")
    assert second != first
    assert wait_until(lambda: cluster.events("DeploymentMissing"), timeout=10, what="an Event")
    assert (cluster.condition("again", "Scaling") or {}).get("status") != "False"


def test_the_queue_name_cannot_change(cluster: Cluster, control_plane: ControlPlane) -> None:
    cluster.create_taskqueue(taskqueue("fixed", "fixed"))
    unnamed = taskqueue("unnamed", "x")
    del unnamed["spec"]["queueName"]
    cluster.create_taskqueue(unnamed)

    for name, patch in (("fixed", {"spec": {"queueName": "other"}}),
                        ("unnamed", {"spec": {"queueName": "added-later"}})):
        refused = control_plane.kubectl(
            "patch", "tq", name, "-n", cluster.namespace, "--type=merge", "-p", json.dumps(patch),
            check=False)
        assert refused.returncode != 0
        assert "queueName cannot change" in refused.stderr


def test_a_rotated_database_secret_rolls_the_workers(
        cluster: Cluster, operator: OperatorProcess, dsn: str) -> None:
    cluster.create_taskqueue(taskqueue("rotate", "rotate", min_replicas=1, max_replicas=1))
    wait_until(lambda: cluster.running_pods("rotate"), timeout=60, what="a worker pod")
    template = "kubetasks.io/database"

    def fingerprint() -> str:
        return str(cluster.deployment("rotate")["spec"]["template"]["metadata"]["annotations"][template])

    before = fingerprint()
    old_pods = {p["metadata"]["name"] for p in cluster.running_pods("rotate")}
    rotated = f"{dsn}?application_name=rotated"  # the same database under a new URL
    cluster.core.patch_namespaced_secret("db", cluster.namespace, {"stringData": {"url": rotated}})

    wait_until(lambda: fingerprint() != before, timeout=30, what="the pod template to change")
    assert wait_until(lambda: cluster.events("DatabaseSecretChanged"), timeout=10, what="an Event")
    wait_until(lambda: {p["metadata"]["name"] for p in cluster.running_pods("rotate")}
               and not old_pods & {p["metadata"]["name"] for p in cluster.running_pods("rotate")},
               timeout=60, what="the workers replaced")
    backend = backend_for(dsn)
    result = queue_tasks.short.using(backend=backend, queue_name="rotate").enqueue(1)
    wait_until(lambda: backend.get_result(result.id).status == TaskResultStatus.SUCCESSFUL,
               timeout=30, what="a task run by the new workers")
    assert backend.get_result(result.id).return_value not in old_pods
    backend.close()
