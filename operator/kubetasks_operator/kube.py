"""The operator's only door to the Kubernetes API (besides kopf's own watching).

Calls are blocking (the official client); the async handlers run them in threads.
"""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

from kubernetes import client, config
from kubernetes.client.rest import ApiException
from pydantic import ValidationError

from kubetasks.logs import register_secret
from kubetasks_operator.objects import DeploymentRefused
from kubetasks_operator.spec import GROUP, PLURAL, VERSION

__all__ = ["ApiException", "Kube", "SecretMissing", "load_config"]

log = logging.getLogger(__name__)
MERGE_PATCH = "application/merge-patch+json"  # the client would send a JSON patch for a dict


class SecretMissing(LookupError):
    """The database Secret or its key does not exist (yet)."""


def load_config() -> None:
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()


class Kube:
    def __init__(self) -> None:
        self.core = client.CoreV1Api()
        self.apps = client.AppsV1Api()
        self.custom = client.CustomObjectsApi()

    def secret_value(self, namespace: str, name: str, key: str) -> str:
        try:
            secret = self.core.read_namespaced_secret(name, namespace)
        except ApiException as error:
            if error.status == 404:
                raise SecretMissing(f"Secret {namespace}/{name} does not exist") from None
            raise
        data = secret.data or {}
        if key not in data:
            raise SecretMissing(f"Secret {namespace}/{name} has no key {key!r} "
                                f"(keys: {sorted(data) or 'none'})")
        try:
            value = base64.b64decode(data[key]).decode()
        except ValueError:
            raise SecretMissing(f"Secret {namespace}/{name} key {key!r} is not UTF-8 text") from None
        register_secret(value)  # never logged, nor shown in an Event or a condition
        return value

    def deployment_state(self, namespace: str, name: str) -> tuple[int, int, str | None] | None:
        """``(spec.replicas, status.readyReplicas, why pods cannot be made)`` of the Deployment
        (the last from its ``ReplicaFailure`` condition: an unknown ServiceAccount, a quota),
        or None if it is gone."""
        try:
            deployment = self.apps.read_namespaced_deployment(name, namespace)
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        failure = next((c.message or c.reason for c in deployment.status.conditions or ()
                        if c.type == "ReplicaFailure" and c.status == "True"), None)
        return (int(deployment.spec.replicas or 0), int(deployment.status.ready_replicas or 0),
                failure)

    def apply_deployment(self, body: dict[str, Any], *, attempts: int = 5) -> str:
        """Create the Deployment with ``body``'s replicas, or replace its spec, so that removed
        fields go away, keeping the live replica count of the object whose version it replaces.
        A change in between (the controller updates the status all the time) is a conflict:
        read again and retry, so that a scale made meanwhile is never undone. Fields the server
        does not know are refused, not dropped: ``DeploymentRefused`` names them."""
        meta = body["metadata"]
        try:
            return self._apply_deployment(body, attempts)
        except ValidationError as error:  # the client checks the body before sending it
            problems = "; ".join(f"{_field(e['loc'])}: {e['msg']}" for e in error.errors())
            raise DeploymentRefused(
                f"Deployment {meta['namespace']}/{meta['name']} is invalid: {problems}") from None
        except ApiException as error:
            if error.status is None or not 400 <= error.status < 500:
                raise  # the API server away or failing: try again later
            raise DeploymentRefused(
                f"the API server refused Deployment {meta['namespace']}/{meta['name']}: "
                f"{error.status} {error.reason}: {_api_message(error)}") from None

    def _apply_deployment(self, body: dict[str, Any], attempts: int) -> str:
        namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
        for attempt in range(attempts):
            try:
                current = self.apps.read_namespaced_deployment(name, namespace)
            except ApiException as error:
                if error.status != 404:
                    raise
                self.apps.create_namespaced_deployment(namespace, body, field_validation="Strict")
                return "created"
            replacement = {
                **body,
                "metadata": {**body["metadata"], "resourceVersion": current.metadata.resource_version},
                "spec": {**body["spec"], "replicas": int(current.spec.replicas or 0)},
            }
            try:
                self.apps.replace_namespaced_deployment(name, namespace, replacement,
                                                        field_validation="Strict")
                return "replaced"
            except ApiException as error:
                if error.status != 409 or attempt == attempts - 1:
                    raise
        raise AssertionError("unreachable")

    def scale_deployment(self, namespace: str, name: str, replicas: int) -> None:
        self.apps.patch_namespaced_deployment_scale(name, namespace, {"spec": {"replicas": replicas}},
                                                    _content_type=MERGE_PATCH)

    def annotate_pod(self, namespace: str, name: str, annotations: dict[str, str]) -> None:
        try:
            self.core.patch_namespaced_pod(name, namespace, {"metadata": {"annotations": annotations}},
                                           _content_type=MERGE_PATCH)
        except ApiException as error:
            if error.status != 404:  # the pod went away meanwhile: nothing to mark
                raise

    def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        try:
            self.custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, namespace, PLURAL, name, {"status": status}, _content_type=MERGE_PATCH)
        except ApiException as error:
            if error.status != 404:  # deleted meanwhile
                raise

    def ensure_peering(self, name: str, namespaces: tuple[str, ...]) -> None:
        """The kopf peering object ``name`` the replicas elect their leader in: a KopfPeering in
        each of ``namespaces``, or one ClusterKopfPeering when they are empty (every namespace).
        kopf keeps a replica paused until the object exists; an existing one is kept."""
        body = {"apiVersion": f"{PEERING_GROUP}/v1", "metadata": {"name": name}}
        try:
            if not namespaces:
                self.custom.create_cluster_custom_object(
                    PEERING_GROUP, "v1", "clusterkopfpeerings", {**body, "kind": "ClusterKopfPeering"})
            for namespace in namespaces:
                self._create_ignoring_conflict(namespace, {**body, "kind": "KopfPeering"})
        except ApiException as error:
            if error.status != 409:
                raise

    def _create_ignoring_conflict(self, namespace: str, body: dict[str, Any]) -> None:
        try:
            self.custom.create_namespaced_custom_object(PEERING_GROUP, "v1", namespace,
                                                        "kopfpeerings", body)
        except ApiException as error:
            if error.status != 409:  # made by the other replica, or at a previous start
                raise


PEERING_GROUP = "kopf.dev"


def _api_message(error: ApiException) -> str:
    """The API server's own words (a Status object's message), else the response body."""
    try:
        return str(json.loads(error.body)["message"])
    except (TypeError, ValueError, KeyError):
        return str(error.body or error.reason).strip()


def _field(location: tuple[int | str, ...]) -> str:
    """``(2, "spec", "template", ..., 0, "env", 7, "valu")`` (argument 2, the body) as
    ``spec.template...env[7].valu``."""
    path = ""
    for part in location[1:] if location and isinstance(location[0], int) else location:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path.lstrip(".")
