"""``spec.podTemplate`` on the real API server: the worker Deployment carries what it adds
(accepted under strict field validation), and a value kubetasks refuses shows on the TaskQueue
naming the field."""

from __future__ import annotations

from typing import Any

import pytest
from localcluster.operator import Cluster, OperatorProcess, taskqueue
from localcluster.polling import wait_until

pytestmark = [pytest.mark.cluster, pytest.mark.usefixtures("local_kubelet", "crd")]

POD_TEMPLATE: dict[str, Any] = {
    "metadata": {"labels": {"cost-center": "ml"}, "annotations": {"example.com/owner": "ml"}},
    "spec": {
        "nodeSelector": {"pool": "gpu"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 50, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname",
                                               "labelSelector": {"matchLabels": {"app": "x"}}}}]}},
        "priorityClassName": "system-cluster-critical",
        "serviceAccountName": "models-reader",
        "securityContext": {"fsGroup": 2000},
        "volumes": [{"name": "models", "configMap": {"name": "models"}}],
        "containers": [
            {"name": "worker", "volumeMounts": [{"name": "models", "mountPath": "/models",
                                                 "readOnly": True}]},
            {"name": "proxy", "image": "kubetasks-worker:test", "args": ["--help"]},
        ],
    },
}


def test_the_worker_deployment_carries_the_pod_template(
        cluster: Cluster, operator: OperatorProcess) -> None:
    body = taskqueue("gpu", "gpu")
    body["spec"]["podTemplate"] = POD_TEMPLATE
    cluster.create_taskqueue(body)
    wait_until(lambda: cluster.replicas("gpu") is not None, timeout=60, what="the Deployment")
    stored = cluster.taskqueue("gpu")["spec"]["podTemplate"]
    assert stored == POD_TEMPLATE  # the CRD's schema kept every field (nothing pruned)

    template = cluster.deployment("gpu")["spec"]["template"]
    assert template["metadata"]["labels"]["cost-center"] == "ml"
    assert template["metadata"]["labels"]["kubetasks.io/taskqueue"] == "gpu"
    assert template["metadata"]["annotations"]["example.com/owner"] == "ml"
    pod = template["spec"]
    assert pod["nodeSelector"] == {"pool": "gpu"}
    assert pod["tolerations"] == POD_TEMPLATE["spec"]["tolerations"]
    assert pod["affinity"] == POD_TEMPLATE["spec"]["affinity"]
    assert (pod["priorityClassName"], pod["serviceAccountName"]) == ("system-cluster-critical",
                                                                     "models-reader")
    assert pod["securityContext"]["fsGroup"] == 2000 and pod["securityContext"]["runAsNonRoot"]
    assert [v["name"] for v in pod["volumes"]] == ["tmp", "models"]
    worker, proxy = pod["containers"]
    assert worker["name"] == "worker" and "--queue" in worker["args"]
    assert {"name": "models", "mountPath": "/models", "readOnly": True} in worker["volumeMounts"]
    assert (proxy["name"], proxy["args"]) == ("proxy", ["--help"])
    # The status is patched just after the Deployment is applied.
    wait_until(lambda: (c := cluster.condition("gpu", "Reconciled")) and c["status"] == "True",
               timeout=30, what="Reconciled=True")


def test_a_worker_field_in_the_pod_template_is_refused_naming_it(
        cluster: Cluster, operator: OperatorProcess) -> None:
    body = taskqueue("clash", "clash")
    body["spec"]["podTemplate"] = {"spec": {"containers": [{"name": "worker", "image": "other:1"}]}}
    cluster.create_taskqueue(body)
    refused = wait_until(
        lambda: (c := cluster.condition("clash", "Reconciled")) and c["status"] == "False" and c,
        timeout=60, what="Reconciled=False for the worker's image in podTemplate")
    assert refused["reason"] == "InvalidSpec"
    assert "spec.podTemplate.spec" in refused["message"]
    assert "(worker).image" in refused["message"] and "spec.worker.image" in refused["message"]
    assert cluster.replicas("clash") is None  # no Deployment built from a refused spec
