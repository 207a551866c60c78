"""What a TaskQueue shows when Kubernetes refuses its workers or the database cannot be used:
a condition and an Event naming the cause, ``Ready`` False meanwhile, and no piece of a
secret in the status, the Events or the operator's log. The real API server decides."""

from __future__ import annotations

import json
from typing import Any

import kubernetes
import pytest
from localcluster.operator import Cluster, OperatorProcess, taskqueue
from localcluster.polling import wait_until

pytestmark = [pytest.mark.cluster, pytest.mark.usefixtures("local_kubelet", "crd")]

HOSTILE = {"hostile": ("postgresql://app:Sup3r%Secret@127.0.0.1:1/app", "Sup3r"),
           "opaque": ("opaque-T0ken-not-a-url", "T0ken")}


def false_condition(cluster: Cluster, name: str, kind: str) -> dict[str, Any] | None:
    found = cluster.condition(name, kind)
    return found if found and found["status"] == "False" else None


def test_refusals_and_an_unreachable_database_show_their_cause_and_no_secret(
        cluster: Cluster, operator: OperatorProcess) -> None:
    typo = taskqueue("typo", "typo")
    typo["spec"]["worker"]["env"].append({"name": "GREETING", "valu": "hello"})
    cluster.create_taskqueue(typo)
    robot = taskqueue("robot", "robot", min_replicas=1)
    robot["spec"]["worker"]["serviceAccountName"] = "robot"
    cluster.create_taskqueue(robot)
    cluster.create_secret("nohost", "postgresql://app:pw@no-such-host.invalid/app")
    cluster.create_taskqueue(taskqueue("nohost", "nohost", secret="nohost"))
    for name, (secret, _) in HOSTILE.items():
        cluster.create_secret(name, secret)
        cluster.create_taskqueue(taskqueue(name, name, secret=name))

    refused = wait_until(lambda: false_condition(cluster, "typo", "Reconciled"), timeout=60,
                         what="Reconciled=False for a field the API server does not know")
    assert refused["reason"] == "DeploymentRefused" and "valu" in refused["message"]
    assert cluster.condition("typo", "Ready")["status"] == "False"  # type: ignore[index]

    no_pods = wait_until(lambda: false_condition(cluster, "robot", "WorkerPods"), timeout=90,
                         what="WorkerPods=False for an unknown ServiceAccount")
    assert no_pods["reason"] == "FailedCreate" and "robot" in no_pods["message"]

    unreachable = wait_until(lambda: false_condition(cluster, "nohost", "DatabaseReachable"),
                             timeout=60, what="DatabaseReachable=False")
    assert "no-such-host.invalid" in unreachable["message"]
    for name in ("nohost", *HOSTILE):
        wait_until(lambda n=name: false_condition(cluster, n, "DatabaseReachable"), timeout=60,
                   what=f"DatabaseReachable=False on {name}")
        assert cluster.condition(name, "Ready")["status"] == "False"  # type: ignore[index]

    events = wait_until(lambda: {e["reason"] for e in cluster.events()} >= {
        "DeploymentRefused", "FailedCreate", "DatabaseUnreachable"} and cluster.events(),
        timeout=60, what="the Events")
    assert "DeploymentMissing" not in {e["reason"] for e in events}
    shown = json.dumps([events, [cluster.status(n) for n in ("nohost", *HOSTILE)]]) + operator.log()
    for _, piece in HOSTILE.values():
        assert piece not in shown


def test_a_blank_image_is_refused_and_the_workers_are_hardened_as_stored(
        cluster: Cluster, operator: OperatorProcess) -> None:
    with pytest.raises(kubernetes.client.exceptions.ApiException) as refused:
        cluster.create_taskqueue(taskqueue("blank", "blank", image=" "))
    assert refused.value.status == 422 and "spec.worker.image" in str(refused.value.body)

    cluster.create_taskqueue(taskqueue("hard", "hard"))
    spec = wait_until(lambda: cluster.deployment("hard")["spec"]["template"]["spec"], timeout=30,
                      what="the Deployment")
    assert spec["automountServiceAccountToken"] is False
    assert spec["securityContext"]["runAsNonRoot"] is True
    container = spec["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert {v["name"]: v for v in spec["volumes"]}["tmp"] == {"name": "tmp", "emptyDir": {}}


def test_a_deleted_database_secret_shows_on_the_taskqueue(
        cluster: Cluster, operator: OperatorProcess) -> None:
    cluster.create_taskqueue(taskqueue("keep", "keep"))
    wait_until(lambda: (cluster.condition("keep", "Ready") or {}).get("status") == "True",
               timeout=60, what="Ready")
    cluster.core.delete_namespaced_secret("db", cluster.namespace)
    missing = wait_until(lambda: false_condition(cluster, "keep", "Reconciled"), timeout=30,
                         what="Reconciled=False once the Secret is gone")
    assert missing["reason"] == "DatabaseSecretMissing" and "db" in missing["message"]
    assert cluster.condition("keep", "Ready")["status"] == "False"  # type: ignore[index]
    assert wait_until(lambda: cluster.events("DatabaseSecretMissing"), timeout=30, what="an Event")
