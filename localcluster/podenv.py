"""What a container's process is started with: its argv and its environment.

Follows the kubelet: ``envFrom`` first, then ``env`` (later entries win), values
from the downward API, Secrets and ConfigMaps, and ``$(VAR)`` references in
env values, command and args expanded against the variables defined before them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

Pod = dict[str, Any]
Container = dict[str, Any]
# (kind, namespace, name) -> the object's data as text, or None when it does not exist.
DataReader = Callable[[str, str, str], "dict[str, str] | None"]


class ContainerConfigError(Exception):
    """The container cannot be started as specified; ``reason`` goes into its waiting state."""

    reason = "CreateContainerConfigError"


class UnknownImageError(ContainerConfigError):
    """No command and no entrypoint known for the image: there is no image to pull here."""

    reason = "ErrImageNeverPull"


def container_argv(
    container: Container, *, entrypoints: Mapping[str, Sequence[str]], env: Mapping[str, str]
) -> list[str]:
    """The command line: ``command`` + ``args``, or the image's entrypoint + ``args``.

    There are no images here, so ``entrypoints`` maps an image name (without
    tag or digest, either in full or its last path segment) to the command its
    image would run.
    """
    args = [expand(arg, env) for arg in container.get("args") or []]
    if command := container.get("command"):
        return [expand(part, env) for part in command] + args
    image = container.get("image", "")
    name = image_name(image)
    entrypoint = entrypoints.get(name) or entrypoints.get(name.rsplit("/", 1)[-1])
    if entrypoint is None:
        known = ", ".join(sorted(entrypoints)) or "none"
        raise UnknownImageError(
            f"container {container['name']!r} has no command and the local kubelet knows no entrypoint "
            f"for image {image!r} (known images: {known}); set the container's command or give "
            f"LocalKubelet an entrypoint for {name!r}"
        )
    return [*entrypoint, *args]


def image_name(image: str) -> str:
    """``ghcr.io/acme/app:1.2@sha256:...`` -> ``ghcr.io/acme/app``."""
    image = image.split("@", 1)[0]
    last_slash = image.rfind("/")
    colon = image.rfind(":")
    return image[:colon] if colon > last_slash else image


def container_env(
    pod: Pod, container: Container, *, pod_ip: str, host_ip: str, read: DataReader
) -> dict[str, str]:
    """The variables the pod spec defines for ``container`` (the process also inherits the kubelet's)."""
    namespace = pod["metadata"]["namespace"]
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        for kind, key in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
            if ref := source.get(key):
                data = _read_required(read, kind, namespace, ref)
                prefix = source.get("prefix", "")
                env.update({prefix + name: value for name, value in (data or {}).items()})
    for var in container.get("env") or []:
        if "valueFrom" in var:
            value = _value_from(var["valueFrom"], pod=pod, pod_ip=pod_ip, host_ip=host_ip, read=read)
            if value is None:  # an optional key that is absent: no variable at all
                continue
        else:
            value = expand(var.get("value", ""), env)
        env[var["name"]] = value
    return env


def field_value(pod: Pod, path: str, *, pod_ip: str, host_ip: str) -> str:
    """The downward API: the value of ``fieldRef.fieldPath`` for this pod."""
    metadata, spec = pod["metadata"], pod["spec"]
    simple = {
        "metadata.name": metadata["name"],
        "metadata.namespace": metadata["namespace"],
        "metadata.uid": metadata["uid"],
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.podIP": pod_ip,
        "status.podIPs": pod_ip,
        "status.hostIP": host_ip,
        "status.hostIPs": host_ip,
    }
    if path in simple:
        return str(simple[path])
    if match := re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path):
        return str((metadata.get(match[1]) or {}).get(match[2], ""))
    raise ContainerConfigError(f"fieldRef {path!r} is not supported by the local kubelet")


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion: known variables are replaced, ``$$`` escapes, the rest stays."""

    def replace(match: re.Match[str]) -> str:
        if match[0] == "$$":
            return "$"
        name = match[1]
        return env.get(name, match[0])

    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.\-]*)\)", replace, text)


def _value_from(
    source: dict[str, Any], *, pod: Pod, pod_ip: str, host_ip: str, read: DataReader
) -> str | None:
    if ref := source.get("fieldRef"):
        return field_value(pod, ref["fieldPath"], pod_ip=pod_ip, host_ip=host_ip)
    namespace = pod["metadata"]["namespace"]
    for kind, key in (("Secret", "secretKeyRef"), ("ConfigMap", "configMapKeyRef")):
        if ref := source.get(key):
            data = _read_required(read, kind, namespace, ref)
            if data is not None and ref["key"] in data:
                return data[ref["key"]]
            if ref.get("optional"):
                return None
            raise ContainerConfigError(f"couldn't find key {ref['key']} in {kind} {namespace}/{ref['name']}")
    raise ContainerConfigError(f"env valueFrom {sorted(source)} is not supported by the local kubelet")


def _read_required(read: DataReader, kind: str, namespace: str, ref: dict[str, Any]) -> dict[str, str] | None:
    data = read(kind, namespace, ref["name"])
    if data is None and not ref.get("optional"):
        raise ContainerConfigError(f"{kind.lower()} {ref['name']!r} not found")
    return data
