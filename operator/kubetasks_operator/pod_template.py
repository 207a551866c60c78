"""``spec.podTemplate``: what a TaskQueue adds to its worker pods beyond ``spec.worker`` —
placement (nodeSelector, tolerations, affinity, topology spread, priority class), volumes and
the worker container's mounts, sidecars and init containers, labels and annotations, security
context and ServiceAccount — in the shape of a pod template, so that it reads like the pod specs
users already write.

kubetasks' own fields win where the operator depends on them, and are refused rather than
silently dropped where a value could only be a mistake: the worker container's image, command,
args, env, ports and probes come from ``spec.worker`` (the entry named ``worker`` in
``containers`` may only add ``volumeMounts`` and ``securityContext``), and the volume named
``tmp`` is the worker's ``/tmp``. The selector labels and the database fingerprint annotation
win over the template's.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

WORKER = "worker"
TMP_VOLUME = "tmp"
WORKER_OVERRIDES = {"name", "volumeMounts", "securityContext"}
WORKER_OWNED = {"image": "spec.worker.image", "imagePullPolicy": "spec.worker.imagePullPolicy",
                "args": "spec.worker.args", "env": "spec.worker.env",
                "envFrom": "spec.worker.envFrom", "resources": "spec.worker.resources",
                "ports": "spec.worker.healthPort"}


class Model(BaseModel):
    """As ``spec.Model`` (which imports this module): frozen, unknown fields refused."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class PodTemplateMetadata(Model):
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class PodTemplatePodSpec(Model):
    node_selector: dict[str, str] = Field(default_factory=dict, alias="nodeSelector")
    tolerations: tuple[dict[str, Any], ...] = ()
    affinity: dict[str, Any] = Field(default_factory=dict)
    topology_spread_constraints: tuple[dict[str, Any], ...] = Field(
        default=(), alias="topologySpreadConstraints")
    priority_class_name: str | None = Field(default=None, alias="priorityClassName")
    runtime_class_name: str | None = Field(default=None, alias="runtimeClassName")
    service_account_name: str | None = Field(default=None, alias="serviceAccountName")
    image_pull_secrets: tuple[dict[str, Any], ...] = Field(default=(), alias="imagePullSecrets")
    security_context: dict[str, Any] = Field(default_factory=dict, alias="securityContext")
    volumes: tuple[dict[str, Any], ...] = ()
    init_containers: tuple[dict[str, Any], ...] = Field(default=(), alias="initContainers")
    containers: tuple[dict[str, Any], ...] = ()

    @model_validator(mode="after")
    def kubetasks_fields_stay(self) -> PodTemplatePodSpec:
        for index, volume in enumerate(self.volumes):
            if volume.get("name") == TMP_VOLUME:
                raise ValueError(f"volumes[{index}]: the name {TMP_VOLUME!r} is the worker's /tmp "
                                 "(an emptyDir kubetasks adds); name the volume otherwise")
        for index, container in enumerate(self.containers):
            if container.get("name") == WORKER:
                _check_worker_overrides(index, container)
            elif not container.get("name") or not container.get("image"):
                raise ValueError(f"containers[{index}]: a sidecar needs a name and an image")
        return self


def _check_worker_overrides(index: int, container: dict[str, Any]) -> None:
    for key in sorted(set(container) - WORKER_OVERRIDES):
        instead = f"; set {WORKER_OWNED[key]} instead" if key in WORKER_OWNED else ""
        raise ValueError(f"containers[{index}] (worker).{key}: kubetasks sets the worker "
                         f"container's {key}{instead}; the worker entry may only add "
                         "volumeMounts and securityContext")
    for mount_index, mount in enumerate(container.get("volumeMounts") or ()):
        if str(mount.get("mountPath", "")).rstrip("/") == "/tmp":
            raise ValueError(f"containers[{index}] (worker).volumeMounts[{mount_index}]: /tmp is "
                             "kubetasks' emptyDir; mount elsewhere")


class PodTemplate(Model):
    metadata: PodTemplateMetadata = Field(default_factory=PodTemplateMetadata)
    spec: PodTemplatePodSpec = Field(default_factory=PodTemplatePodSpec)


def merge_pod_template(metadata: dict[str, Any], pod: dict[str, Any],
                       template: PodTemplate) -> tuple[dict[str, Any], dict[str, Any]]:
    """The worker pod's metadata and spec with ``template`` merged in: maps merged key by key
    (the template's keys win over ``spec.worker``'s), lists appended, single values set.
    kubetasks' labels and annotations are put back on top by the caller."""
    extra = template.spec
    merged = {**pod, "containers": [_merge_worker(c, extra) if c["name"] == WORKER else c
                                    for c in pod["containers"]]}
    merged["containers"] += [dict(c) for c in extra.containers if c.get("name") != WORKER]
    lists = {"tolerations": extra.tolerations, "volumes": extra.volumes,
             "initContainers": extra.init_containers, "imagePullSecrets": extra.image_pull_secrets,
             "topologySpreadConstraints": extra.topology_spread_constraints}
    for key, items in lists.items():
        if items:
            merged[key] = [*pod.get(key, []), *(dict(i) for i in items)]
    maps = {"nodeSelector": extra.node_selector, "securityContext": extra.security_context,
            "affinity": extra.affinity}
    for key, values in maps.items():
        if values:
            merged[key] = {**pod.get(key, {}), **values}
    singles = {"priorityClassName": extra.priority_class_name,
               "runtimeClassName": extra.runtime_class_name,
               "serviceAccountName": extra.service_account_name}
    merged.update({k: v for k, v in singles.items() if v})
    labels = {**metadata.get("labels", {}), **template.metadata.labels}
    annotations = {**metadata.get("annotations", {}), **template.metadata.annotations}
    merged_metadata = {"labels": labels, **({"annotations": annotations} if annotations else {})}
    return merged_metadata, merged


def _merge_worker(container: dict[str, Any], extra: PodTemplatePodSpec) -> dict[str, Any]:
    overrides = next((c for c in extra.containers if c.get("name") == WORKER), {})
    merged = dict(container)
    if overrides.get("volumeMounts"):
        merged["volumeMounts"] = [*container.get("volumeMounts", []),
                                  *(dict(m) for m in overrides["volumeMounts"])]
    if overrides.get("securityContext"):
        merged["securityContext"] = {**container.get("securityContext", {}),
                                     **overrides["securityContext"]}
    return merged
