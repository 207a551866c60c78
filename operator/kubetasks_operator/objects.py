"""The Kubernetes objects the operator owns, built from a TaskQueue spec — pure functions."""

from __future__ import annotations

import hashlib
from typing import Any

from kubetasks_operator.pod_template import merge_pod_template
from kubetasks_operator.spec import MANAGED_BY, QUEUE_LABEL, TASKQUEUE_LABEL, TaskQueueSpec, queue_name

WORKER_CONTAINER = "worker"
DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
DATABASE_ANNOTATION = "kubetasks.io/database"
TMP_VOLUME = "tmp"


class DeploymentRefused(Exception):
    """The API server refused the worker Deployment (invalid, forbidden, a field it does not
    know); the message is the server's, naming the field. It stays refused until the
    TaskQueue changes."""


def deployment_name(taskqueue_name: str) -> str:
    return f"{taskqueue_name}-worker"


def selector_labels(taskqueue_name: str) -> dict[str, str]:
    return {**MANAGED_BY, TASKQUEUE_LABEL: taskqueue_name}


def _field_env(name: str, path: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}}


def worker_env(spec: TaskQueueSpec) -> list[dict[str, Any]]:
    """Identity from the downward API, the database URL from its Secret, then the user's env
    (which may override anything but the identity)."""
    ref = spec.database.secret_ref
    identity = [
        _field_env("POD_NAME", "metadata.name"),
        _field_env("POD_UID", "metadata.uid"),
        _field_env("POD_NAMESPACE", "metadata.namespace"),
        _field_env("NODE_NAME", "spec.nodeName"),
    ]
    database = {"name": "KUBETASKS_DATABASE_URL",
                "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}}
    reserved = {e["name"] for e in identity}
    user = [dict(e) for e in spec.worker.env if e.get("name") not in reserved]
    overridden = {e["name"] for e in user}
    return identity + ([] if "KUBETASKS_DATABASE_URL" in overridden else [database]) + user


def worker_args(spec: TaskQueueSpec, taskqueue_name: str) -> list[str]:
    worker = spec.worker
    # The worker drains within the pod's grace period, keeping a few seconds to put back
    # what did not finish before the kubelet's SIGKILL.
    drain = max(1, worker.grace_period_seconds - min(5, worker.grace_period_seconds // 3))
    # Heartbeats well inside the timeout after which the sweep declares a claim lost.
    heartbeat = min(10.0, spec.lost_tasks.heartbeat_timeout_seconds / 4)
    return ["--queue", queue_name(spec, taskqueue_name), "--concurrency", str(worker.concurrency),
            "--health-port", str(worker.health_port), "--grace-period", str(drain),
            "--max-lost", str(spec.lost_tasks.max_lost), "--heartbeat-interval", f"{heartbeat:g}",
            *worker.args]


POD_SECURITY: dict[str, Any] = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
CONTAINER_SECURITY: dict[str, Any] = {
    "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"},
}
"""Hardened by default (the restricted Pod Security Standard); ``worker.podSecurityContext``
and ``worker.securityContext`` override these field by field."""


def worker_container(spec: TaskQueueSpec, taskqueue_name: str) -> dict[str, Any]:
    worker = spec.worker
    port = worker.health_port
    container: dict[str, Any] = {
        "name": WORKER_CONTAINER,
        "image": worker.image,
        "args": worker_args(spec, taskqueue_name),
        "env": worker_env(spec),
        "ports": [{"name": "http", "containerPort": port}],
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": port},
                          "periodSeconds": 10, "failureThreshold": 3},
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": port},
                           "periodSeconds": 5, "failureThreshold": 2},
        "securityContext": {**CONTAINER_SECURITY, **worker.security_context},
        # The root filesystem is read-only: temporary files go to an emptyDir.
        "volumeMounts": [{"name": TMP_VOLUME, "mountPath": "/tmp"}],
    }
    optional = {"imagePullPolicy": worker.image_pull_policy, "envFrom": list(worker.env_from),
                "resources": worker.resources}
    container.update({k: v for k, v in optional.items() if v})
    return container


def database_fingerprint(conninfo: str) -> str:
    """Changes when the database URL does, without revealing it."""
    return hashlib.sha256(conninfo.encode()).hexdigest()[:16]


def worker_deployment(spec: TaskQueueSpec, *, taskqueue_name: str, namespace: str,
                      replicas: int, database: str = "") -> dict[str, Any]:
    """The worker Deployment. ``replicas`` is used only when it is created (the scaler owns it
    afterwards); ``database`` (a fingerprint of the URL) rolls the pods when the Secret changes,
    since environment variables taken from a Secret are read only when a container starts."""
    worker = spec.worker
    labels = {**selector_labels(taskqueue_name), QUEUE_LABEL: queue_name(spec, taskqueue_name)}
    pod_spec: dict[str, Any] = {
        "containers": [worker_container(spec, taskqueue_name)],
        "terminationGracePeriodSeconds": worker.grace_period_seconds,
        "securityContext": {**POD_SECURITY, **worker.pod_security_context},
        # Workers need no Kubernetes API: no token in the pod unless the TaskQueue asks.
        "automountServiceAccountToken": worker.automount_service_account_token,
        "volumes": [{"name": TMP_VOLUME, "emptyDir": {}}],
    }
    optional = {"serviceAccountName": worker.service_account_name,
                "nodeSelector": worker.node_selector, "tolerations": list(worker.tolerations)}
    pod_spec.update({k: v for k, v in optional.items() if v})
    template_metadata, pod_spec = merge_pod_template(
        {"labels": dict(worker.pod_labels), "annotations": dict(worker.pod_annotations)},
        pod_spec, spec.pod_template)
    template_metadata["labels"].update(labels)  # the selector's labels win over the user's
    if database:
        template_metadata["annotations"] = {**template_metadata.get("annotations", {}),
                                            DATABASE_ANNOTATION: database}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": deployment_name(taskqueue_name), "namespace": namespace,
                     "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector_labels(taskqueue_name)},
            # Never take a busy worker away during a rollout before its replacement is up.
            "strategy": {"type": "RollingUpdate",
                         "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "25%"}},
            "template": {"metadata": template_metadata, "spec": pod_spec},
        },
    }


def deletion_costs(pods: dict[str, str], running_by_uid: dict[str, int]) -> dict[str, int]:
    """Pod name -> deletion cost: busy pods cost their running task count (times 100), idle
    pods 0, so the ReplicaSet removes idle workers first on scale-in. ``pods`` maps uid->name."""
    return {name: 100 * running_by_uid.get(uid, 0) for uid, name in pods.items()}
