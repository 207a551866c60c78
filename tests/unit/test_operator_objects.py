"""The operator's pure parts: the spec model, the worker Deployment, pod-death detection."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kubetasks_operator.lost import pod_loss
from kubetasks_operator.objects import DELETION_COST, deletion_costs, worker_deployment
from kubetasks_operator.spec import InvalidSpec, parse_retention, parse_spec, queue_name

SPEC: dict[str, Any] = {
    "database": {"secretRef": {"name": "db"}},
    "worker": {"image": "ghcr.io/acme/app:1.2.3", "args": ["--import", "app.tasks"],
               "concurrency": 3, "gracePeriodSeconds": 40,
               "env": [{"name": "LOG", "value": "debug"},
                       {"name": "POD_NAME", "value": "spoofed"}],
               "resources": {"limits": {"memory": "512Mi"}}},
    "lostTasks": {"maxLost": 5},
}


def deployment(**changes: Any) -> dict[str, Any]:
    spec = parse_spec({**SPEC, **changes})
    return worker_deployment(spec, taskqueue_name="emails", namespace="apps", replicas=2)


def container(body: dict[str, Any]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = body["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def test_the_worker_deployment_carries_identity_database_probes_and_grace() -> None:
    body = deployment()
    worker = container(body)
    env = {e["name"]: e for e in worker["env"]}

    assert body["metadata"] == {"name": "emails-worker", "namespace": "apps", "labels": {
        "app.kubernetes.io/managed-by": "kubetasks", "kubetasks.io/taskqueue": "emails",
        "kubetasks.io/queue": "emails"}}
    assert body["spec"]["replicas"] == 2
    assert body["spec"]["selector"]["matchLabels"] == {
        "app.kubernetes.io/managed-by": "kubetasks", "kubetasks.io/taskqueue": "emails"}
    assert env["POD_UID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.uid"
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"  # not spoofable
    assert env["KUBETASKS_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": "db", "key": "url"}
    assert env["LOG"] == {"name": "LOG", "value": "debug"}
    assert worker["args"] == ["--queue", "emails", "--concurrency", "3", "--health-port", "8000",
                              "--grace-period", "35", "--max-lost", "5", "--heartbeat-interval", "10",
                              "--import", "app.tasks"]
    tight = container(deployment(lostTasks={"heartbeatTimeoutSeconds": 12, "sweepIntervalSeconds": 5}))
    assert tight["args"][tight["args"].index("--heartbeat-interval") + 1] == "3"
    assert worker["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": 8000}
    assert worker["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": 8000}
    assert worker["resources"] == {"limits": {"memory": "512Mi"}}
    assert body["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 40


def test_fields_left_out_of_the_spec_are_left_out_of_the_deployment() -> None:
    worker = container(deployment(worker={"image": "app:1"}))
    assert "resources" not in worker and "envFrom" not in worker and "imagePullPolicy" not in worker
    assert "nodeSelector" not in deployment(worker={"image": "app:1"})["spec"]["template"]["spec"]


def test_queue_name_defaults_to_the_taskqueue_name() -> None:
    assert queue_name(parse_spec(SPEC), "emails") == "emails"
    assert queue_name(parse_spec({**SPEC, "queueName": "mail"}), "emails") == "mail"


@pytest.mark.parametrize(("spec", "message"), [
    ({**SPEC, "scaling": {"minReplicas": 4, "maxReplicas": 2}},
     "scaling.minReplicas (4) must not exceed scaling.maxReplicas (2)"),
    ({**SPEC, "worker": {"image": ""}}, "spec.worker.image: String should have at least 1 character"),
    ({"worker": {"image": "x"}}, "spec.database: Field required"),
    ({**SPEC, "colour": "red"}, "spec.colour: Extra inputs are not permitted"),
])
def test_an_invalid_spec_says_what_to_fix(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidSpec, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_spec(spec)


def test_retention() -> None:
    assert parse_retention("7d") == timedelta(days=7)
    assert parse_retention("90s") == timedelta(seconds=90)
    with pytest.raises(InvalidSpec, match="retention '7 days' is invalid"):
        parse_retention("7 days")


def test_deletion_costs_make_idle_pods_go_first() -> None:
    costs = deletion_costs({"u1": "pod-a", "u2": "pod-b", "u3": "pod-c"}, {"u2": 3, "u9": 1})
    assert costs == {"pod-a": 0, "pod-b": 300, "pod-c": 0}
    assert DELETION_COST == "controller.kubernetes.io/pod-deletion-cost"


def pod(phase: str = "Running", restarts: int = 0, **status: Any) -> dict[str, Any]:
    worker = {"name": "worker", "restartCount": restarts,
              "state": {"running": {"startedAt": "2026-01-01T10:00:00Z"}},
              "lastState": {"terminated": {"reason": "OOMKilled", "exitCode": 137,
                                           "finishedAt": "2026-01-01T09:59:59Z"}}}
    return {"metadata": {"uid": "u1", "name": "emails-worker-abc"},
            "status": {"phase": phase, "containerStatuses": [worker], **status}}


def test_a_deleted_pod_lost_everything_it_held() -> None:
    loss = pod_loss("DELETED", pod(), previous_restarts=0)
    assert loss is not None
    assert (loss.pod_uid, loss.claimed_before) == ("u1", None)
    assert loss.reason == "pod emails-worker-abc was deleted"


def test_a_failed_or_evicted_pod_lost_everything_it_held() -> None:
    loss = pod_loss("MODIFIED", pod("Failed", reason="Evicted"), previous_restarts=0)
    assert loss is not None and loss.reason == "pod emails-worker-abc ended Failed (Evicted)"


def test_a_restarted_container_lost_what_it_claimed_before_the_restart() -> None:
    loss = pod_loss("MODIFIED", pod(restarts=2), previous_restarts=1)
    assert loss is not None
    assert loss.claimed_before == datetime(2026, 1, 1, 10, 0, tzinfo=UTC)
    assert loss.reason == "worker container of pod emails-worker-abc restarted (OOMKilled)"


@pytest.mark.parametrize(("event", "body", "previous"), [
    ("MODIFIED", pod(restarts=1), 1),      # no new restart
    ("ADDED", pod(restarts=3), None),      # first sight: nothing known to compare with
    ("MODIFIED", pod("Pending"), 0),
])
def test_a_living_pod_lost_nothing(event: str, body: dict[str, Any], previous: int | None) -> None:
    assert pod_loss(event, body, previous) is None
