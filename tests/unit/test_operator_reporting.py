"""What a TaskQueue shows when Kubernetes or the database refuses: a condition and an Event
naming the cause, ``Ready`` never True while ``DatabaseReachable`` is False, the scale loop
never ended by a refusal, and no secret in any of it. Fakes of the ports, as in
test_queue_controller."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import kopf
import psycopg
import pytest

from kubetasks.logs import register_secret
from kubetasks_operator.controller import QueueController
from kubetasks_operator.daemon import QueueLoop, apply_worker_deployment
from kubetasks_operator.kube import ApiException, Kube
from kubetasks_operator.objects import DeploymentRefused
from kubetasks_operator.spec import parse_spec

from .test_queue_controller import SPEC, FakeKube, FakeStore

BODY = kopf.Body({"apiVersion": "kubetasks.io/v1alpha1", "kind": "TaskQueue",  # type: ignore[arg-type]
                  "metadata": {"name": "emails", "namespace": "shop", "uid": "u-1"}})


class UnreachableStore(FakeStore):
    """A database whose URL the driver refuses, quoting a piece of it."""

    def queue_statistics(self, queue_name: str, **_: Any) -> Any:
        return psycopg.connect(self.conninfo, connect_timeout=2)

    def connect(self) -> Any:
        return psycopg.connect(self.conninfo, connect_timeout=2)


class RefusingKube(FakeKube):
    def apply_deployment(self, body: dict[str, Any]) -> str:
        raise DeploymentRefused("the API server refused Deployment shop/emails-worker: 422 "
                                "Unprocessable Entity: spec.template.spec.containers[0].env[1].valu: "
                                "field not declared in schema")


def make(store: FakeStore, kube: FakeKube) -> tuple[QueueController, list[tuple[str, str, str]]]:
    events: list[tuple[str, str, str]] = []
    controller = QueueController(kube=kube, store=store, namespace="shop", name="emails",
                                 queue_name="emails", spec=parse_spec(SPEC),
                                 post_event=lambda *event: events.append(event))
    return controller, events


def conditions(controller: QueueController) -> dict[str, tuple[str, str, str]]:
    return {c["type"]: (c["status"], c["reason"], c["message"]) for c in controller.conditions}


def test_an_unreachable_database_names_the_host_and_ready_is_never_true_meanwhile() -> None:
    controller, events = make(UnreachableStore(conninfo="postgresql://app:pw@db.invalid/app"),
                              FakeKube())
    apply_worker_deployment(controller, BODY)
    asyncio.run(QueueLoop().run_once(controller, BODY, {}))
    apply_worker_deployment(controller, BODY)  # a spec change meanwhile: still not Ready
    shown = conditions(controller)
    assert shown["DatabaseReachable"][:2] == ("False", "DatabaseUnreachable")
    assert "db.invalid" in shown["DatabaseReachable"][2]
    assert shown["Ready"][:2] == ("False", "DatabaseUnreachable")
    assert [e[:2] for e in events] == [("Warning", "DatabaseUnreachable")]
    assert "db.invalid" in events[0][2]


@pytest.mark.parametrize("secret", ["postgresql://app:Sup3r%Secret@127.0.0.1:1/app",
                                    "opaque-T0ken-not-a-url"])
def test_no_piece_of_a_hostile_secret_reaches_a_condition_an_event_or_the_status(secret: str) -> None:
    register_secret(secret)  # as Kube.secret_value does with every value it reads
    kube = FakeKube()
    controller, events = make(UnreachableStore(conninfo=secret), kube)
    apply_worker_deployment(controller, BODY)
    for _ in range(3):
        asyncio.run(QueueLoop().run_once(controller, BODY, {}))
    written = json.dumps([events, controller.conditions, kube.statuses])
    assert "DatabaseUnreachable" in written
    assert "Sup3r" not in written and "T0ken" not in written


def test_a_refused_deployment_shows_the_servers_cause_and_the_loop_goes_on() -> None:
    kube = RefusingKube(replicas=None)  # never created
    controller, events = make(FakeStore(), kube)
    loop = QueueLoop()
    for _ in range(3):
        asyncio.run(loop.run_once(controller, BODY, {}))  # never raises
    reconciled = conditions(controller)["Reconciled"]
    assert reconciled[:2] == ("False", "DeploymentRefused") and "env[1].valu" in reconciled[2]
    assert conditions(controller)["Ready"][:2] == ("False", "DeploymentRefused")
    assert [e[1] for e in events] == ["DeploymentRefused"]  # once, and no DeploymentMissing
    assert "field not declared" in events[0][2]


def test_pods_that_cannot_be_created_show_why() -> None:
    kube = FakeKube(replicas=1, failure='pods "emails-worker-x" is forbidden: error looking for '
                                         'service account shop/robot: serviceaccount "robot" not found')
    controller, events = make(FakeStore(), kube)
    apply_worker_deployment(controller, BODY)
    controller.step(controller_now(), {})
    assert conditions(controller)["WorkerPods"][:2] == ("False", "FailedCreate")
    assert conditions(controller)["Ready"][0] == "False"
    assert events[-1][1] == "FailedCreate" and 'serviceaccount "robot" not found' in events[-1][2]


def controller_now() -> Any:
    from kubetasks_operator.controller import utcnow

    return utcnow()


class FakeApps:
    def read_namespaced_deployment(self, name: str, namespace: str) -> Any:
        raise ApiException(status=404, reason="Not Found")

    def create_namespaced_deployment(self, namespace: str, body: Any, **options: Any) -> Any:
        assert options == {"field_validation": "Strict"}  # unknown fields refused, not dropped
        error = ApiException(status=422, reason="Unprocessable Entity")
        error.body = json.dumps({"kind": "Status", "message": 'Deployment.apps "q-worker" is invalid: '
                                 "spec.template.spec.containers[0].image: Required value"})
        raise error


def test_the_api_servers_refusal_becomes_deployment_refused_with_its_message() -> None:
    kube = Kube.__new__(Kube)
    kube.apps = FakeApps()
    with pytest.raises(DeploymentRefused, match=r"422 Unprocessable Entity: .*image: Required value"):
        kube.apply_deployment({"metadata": {"name": "q-worker", "namespace": "shop"}, "spec": {}})


class SecretGoneKube(FakeKube):
    def secret_value(self, namespace: str, name: str, key: str) -> str:
        from kubetasks_operator.kube import SecretMissing

        raise SecretMissing(f"Secret {namespace}/{name} does not exist")


def test_a_deleted_database_secret_shows_on_the_taskqueue() -> None:
    from kubetasks_operator.daemon import _follow_secret
    from kubetasks_operator.runtime import Runtime

    kube = SecretGoneKube()
    controller, events = make(FakeStore(), kube)
    apply_worker_deployment(controller, BODY)
    runtime = Runtime(kube=kube, listen=False)  # type: ignore[arg-type]
    assert asyncio.run(_follow_secret(runtime, controller, BODY)) is controller  # keeps its URL
    assert conditions(controller)["Reconciled"][:2] == ("False", "DatabaseSecretMissing")
    assert conditions(controller)["Ready"][0] == "False"
    assert events == [("Warning", "DatabaseSecretMissing",
                       "Secret shop/db does not exist: new worker pods cannot start")]


class UnmigratedStore(FakeStore):
    """A database that answers but has no kubetasks schema."""

    def __init__(self) -> None:
        super().__init__()
        self.migrated = False

    def queue_statistics(self, queue_name: str, **kwargs: Any) -> Any:
        if not self.migrated:
            raise psycopg.errors.UndefinedTable('relation "kubetasks_tasks" does not exist\n'
                                                "LINE 4: FROM kubetasks_tasks")
        return super().queue_statistics(queue_name, **kwargs)


def test_a_database_without_the_schema_says_to_run_migrate_not_that_it_is_unreachable() -> None:
    store = UnmigratedStore()
    controller, events = make(store, FakeKube())
    apply_worker_deployment(controller, BODY)
    loop = QueueLoop()
    for _ in range(2):
        asyncio.run(loop.run_once(controller, BODY, {}))
    status, reason, message = conditions(controller)["DatabaseReachable"]
    assert (status, reason) == ("False", "SchemaMissing")
    assert "kubetasks migrate" in message and 'relation "kubetasks_tasks" does not exist' in message
    assert "LINE 4" not in message
    assert conditions(controller)["Ready"][:2] == ("False", "SchemaMissing")
    assert [e[:2] for e in events] == [("Warning", "SchemaMissing")]  # once, not every step

    store.migrated = True
    asyncio.run(loop.run_once(controller, BODY, {}))
    assert conditions(controller)["DatabaseReachable"][:2] == ("True", "Connected")
    assert events[-1][:2] == ("Normal", "DatabaseReachable")
