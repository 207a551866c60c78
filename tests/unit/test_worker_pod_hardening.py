"""Worker pods are hardened by default (the restricted Pod Security Standard), and each
setting can be overridden in the TaskQueue."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from kubetasks_operator.objects import worker_deployment
from kubetasks_operator.spec import InvalidSpec, parse_spec

REPO = Path(__file__).resolve().parents[2]
SPEC: dict[str, Any] = {"database": {"secretRef": {"name": "db"}}, "worker": {"image": "app:1"}}


def pod(worker: dict[str, Any] | None = None) -> dict[str, Any]:
    spec = parse_spec({**SPEC, "worker": {**SPEC["worker"], **(worker or {})}})
    deployment = worker_deployment(spec, taskqueue_name="emails", namespace="shop", replicas=0)
    return dict(deployment["spec"]["template"]["spec"])


def test_worker_pods_are_hardened_by_default() -> None:
    spec = pod()
    container = spec["containers"][0]
    assert spec["automountServiceAccountToken"] is False
    assert spec["securityContext"] == {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}
    assert container["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    assert spec["volumes"] == [{"name": "tmp", "emptyDir": {}}]


def test_each_setting_can_be_overridden_in_the_taskqueue() -> None:
    spec = pod({"automountServiceAccountToken": True,
                "podSecurityContext": {"runAsNonRoot": False, "fsGroup": 2000},
                "securityContext": {"readOnlyRootFilesystem": False, "runAsUser": 1000}})
    container = spec["containers"][0]["securityContext"]
    assert spec["automountServiceAccountToken"] is True
    assert spec["securityContext"] == {"runAsNonRoot": False, "fsGroup": 2000,
                                       "seccompProfile": {"type": "RuntimeDefault"}}
    assert container["readOnlyRootFilesystem"] is False and container["runAsUser"] == 1000
    assert container["capabilities"] == {"drop": ["ALL"]}  # the rest stays


def test_the_crd_and_its_chart_copy_accept_the_overrides_and_refuse_a_blank_image() -> None:
    crd = (REPO / "crds" / "taskqueue.yaml").read_text()
    assert crd == (REPO / "charts" / "kubetasks" / "crds" / "taskqueue.yaml").read_text()
    worker = yaml.safe_load(crd)["spec"]["versions"][0]["schema"]["openAPIV3Schema"][
        "properties"]["spec"]["properties"]["worker"]["properties"]
    assert worker["automountServiceAccountToken"]["default"] is False
    assert {"podSecurityContext", "securityContext"} <= set(worker)
    assert worker["image"]["pattern"] == r"^\S+$"
    with pytest.raises(InvalidSpec, match="spec.worker.image"):
        parse_spec({**SPEC, "worker": {"image": " "}})


def test_the_worker_image_runs_as_uid_10001() -> None:
    dockerfile = (REPO / "worker_image" / "Dockerfile").read_text().splitlines()
    assert [line for line in dockerfile if line.startswith("USER ")][-1] == "USER 10001"
