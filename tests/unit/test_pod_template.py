"""``spec.podTemplate`` merged into the worker Deployment: what it adds, what kubetasks keeps,
and what is refused with the field named."""

from __future__ import annotations

from typing import Any

import pytest

from kubetasks_operator.objects import DATABASE_ANNOTATION, worker_deployment
from kubetasks_operator.spec import InvalidSpec, parse_spec

SPEC: dict[str, Any] = {
    "database": {"secretRef": {"name": "db"}},
    "worker": {"image": "ghcr.io/acme/app:1.2.3", "nodeSelector": {"pool": "general", "zone": "a"},
               "tolerations": [{"key": "spot", "operator": "Exists"}],
               "podLabels": {"team": "mail"}, "podAnnotations": {"owner": "mail"},
               "serviceAccountName": "from-worker"},
}
AFFINITY = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
    {"matchExpressions": [{"key": "gpu", "operator": "In", "values": ["a100"]}]}]}}}
TEMPLATE: dict[str, Any] = {
    "metadata": {"labels": {"sidecar.istio.io/inject": "true", "team": "search",
                            "kubetasks.io/taskqueue": "spoofed"},
                 "annotations": {"prometheus.io/scrape": "true", DATABASE_ANNOTATION: "spoofed"}},
    "spec": {
        "nodeSelector": {"pool": "gpu"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": AFFINITY,
        "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone",
                                       "whenUnsatisfiable": "ScheduleAnyway"}],
        "priorityClassName": "batch",
        "serviceAccountName": "models-reader",
        "securityContext": {"fsGroup": 2000, "runAsNonRoot": True},
        "volumes": [{"name": "models", "persistentVolumeClaim": {"claimName": "models"}}],
        "initContainers": [{"name": "fetch", "image": "busybox:1.36", "command": ["true"]}],
        "containers": [
            {"name": "worker", "volumeMounts": [{"name": "models", "mountPath": "/models"}],
             "securityContext": {"readOnlyRootFilesystem": False}},
            {"name": "proxy", "image": "ghcr.io/acme/proxy:2", "ports": [{"containerPort": 5432}]},
        ],
    },
}


def pod(template: dict[str, Any] | None = None) -> dict[str, Any]:
    spec = parse_spec({**SPEC, **({"podTemplate": template} if template is not None else {})})
    body = worker_deployment(spec, taskqueue_name="emails", namespace="apps", replicas=1,
                             database="f1ngerprint")
    return dict(body["spec"]["template"])


def refusal(template: dict[str, Any]) -> str:
    with pytest.raises(InvalidSpec) as error:
        parse_spec({**SPEC, "podTemplate": template})
    return str(error.value)


def test_placement_volumes_sidecars_and_metadata_reach_the_pod() -> None:
    template = pod(TEMPLATE)
    spec = template["spec"]
    assert spec["nodeSelector"] == {"pool": "gpu", "zone": "a"}  # merged; the template's key wins
    assert [t["key"] for t in spec["tolerations"]] == ["spot", "nvidia.com/gpu"]  # appended
    assert spec["affinity"] == AFFINITY
    assert spec["topologySpreadConstraints"][0]["topologyKey"] == "zone"
    assert spec["priorityClassName"] == "batch"
    assert spec["serviceAccountName"] == "models-reader"
    assert [v["name"] for v in spec["volumes"]] == ["tmp", "models"]
    assert [c["name"] for c in spec["initContainers"]] == ["fetch"]
    worker, proxy = spec["containers"]
    assert (worker["name"], worker["image"], proxy["name"]) == ("worker", "ghcr.io/acme/app:1.2.3", "proxy")
    assert worker["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"},
                                      {"name": "models", "mountPath": "/models"}]
    assert proxy["ports"] == [{"containerPort": 5432}]
    labels, annotations = template["metadata"]["labels"], template["metadata"]["annotations"]
    assert labels["sidecar.istio.io/inject"] == "true" and labels["team"] == "search"
    assert annotations["prometheus.io/scrape"] == "true" and annotations["owner"] == "mail"


def test_kubetasks_keeps_its_selector_labels_database_annotation_and_hardening() -> None:
    template = pod(TEMPLATE)
    assert template["metadata"]["labels"]["kubetasks.io/taskqueue"] == "emails"
    assert template["metadata"]["annotations"][DATABASE_ANNOTATION] == "f1ngerprint"
    spec = template["spec"]
    # Security contexts are overridden field by field: the rest of the hardening stays.
    assert spec["securityContext"]["fsGroup"] == 2000
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    worker = spec["containers"][0]
    assert worker["securityContext"]["readOnlyRootFilesystem"] is False
    assert worker["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert spec["automountServiceAccountToken"] is False
    assert "--queue" in worker["args"] and worker["readinessProbe"]["httpGet"]["path"] == "/readyz"


def test_without_a_template_the_pod_is_what_spec_worker_makes() -> None:
    assert pod() == pod({})
    spec = pod()["spec"]
    assert [c["name"] for c in spec["containers"]] == ["worker"]
    assert "affinity" not in spec and "initContainers" not in spec


@pytest.mark.parametrize(("template", "named"), [
    ({"spec": {"containers": [{"name": "worker", "image": "other:1"}]}},
     "containers[0] (worker).image: kubetasks sets the worker container's image; set spec.worker.image"),
    ({"spec": {"containers": [{"name": "worker", "command": ["sh"]}]}},
     "containers[0] (worker).command: kubetasks sets"),
    ({"spec": {"containers": [{"name": "worker", "volumeMounts": [{"name": "x", "mountPath": "/tmp/"}]}]}},
     "containers[0] (worker).volumeMounts[0]: /tmp is kubetasks' emptyDir"),
    ({"spec": {"volumes": [{"name": "tmp", "emptyDir": {"medium": "Memory"}}]}},
     "volumes[0]: the name 'tmp' is the worker's /tmp"),
    ({"spec": {"containers": [{"name": "proxy"}]}}, "containers[0]: a sidecar needs a name and an image"),
    ({"spec": {"terminationGracePeriodSeconds": 5}}, "spec.podTemplate.spec.terminationGracePeriodSeconds"),
    ({"spec": {"nodeSelector": {"pool": 1}}}, "spec.podTemplate.spec.nodeSelector.pool"),
    ({"metadata": {"name": "x"}}, "spec.podTemplate.metadata.name"),
])
def test_a_refused_value_names_its_field(template: dict[str, Any], named: str) -> None:
    message = refusal(template)
    assert named in message, message
