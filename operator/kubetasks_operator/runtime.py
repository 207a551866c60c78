"""What the operator keeps between handler calls: API access, one Store, one LISTEN connection
and one statistics poller per database, and a controller per TaskQueue."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import kopf

from kubetasks.logs import redact
from kubetasks.store import Store
from kubetasks_operator.controller import EventPoster, QueueController
from kubetasks_operator.kube import Kube
from kubetasks_operator.notifier import Notifier
from kubetasks_operator.poller import StatisticsPoller
from kubetasks_operator.spec import TaskQueueSpec, queue_name

Key = tuple[str, str]  # (namespace, TaskQueue name)


def event_poster(reference: Mapping[str, Any]) -> EventPoster:
    ref = kopf.Body(cast(kopf.RawBody, dict(reference)))

    def post(kind: str, reason: str, message: str) -> None:
        kopf.event(ref, type=kind, reason=reason, message=redact(message)[:1000])

    return post


def object_reference(body: Mapping[str, Any]) -> dict[str, Any]:
    meta = body["metadata"]
    return {"apiVersion": body["apiVersion"], "kind": body["kind"],
            "metadata": {"name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"]}}


@dataclass
class Runtime:
    kube: Kube
    listen: bool = True  # wake scalers on NOTIFY; False polls only
    stores: dict[str, Store] = field(default_factory=dict)
    notifiers: dict[str, Notifier] = field(default_factory=dict)
    pollers: dict[str, StatisticsPoller] = field(default_factory=dict)
    controllers: dict[Key, QueueController] = field(default_factory=dict)
    restarts: dict[str, int] = field(default_factory=dict)  # pod uid -> worker restart count

    def store(self, conninfo: str) -> Store:
        if conninfo not in self.stores:
            self.stores[conninfo] = Store(conninfo, min_size=0, max_size=4, timeout=10)
        return self.stores[conninfo]

    def notifier(self, conninfo: str) -> Notifier:
        if conninfo not in self.notifiers:
            self.notifiers[conninfo] = Notifier(self.store(conninfo))
        return self.notifiers[conninfo]

    def poller(self, conninfo: str) -> StatisticsPoller:
        if conninfo not in self.pollers:
            self.pollers[conninfo] = StatisticsPoller(self.store(conninfo))
        return self.pollers[conninfo]

    def controller(self, body: Mapping[str, Any], spec: TaskQueueSpec, conninfo: str) -> QueueController:
        """The TaskQueue's controller, made or brought up to date with its spec and database."""
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        current = self.controllers.get(key)
        queue = queue_name(spec, key[1])
        if current is None or current.store.conninfo != conninfo or current.queue_name != queue:
            previous = current
            current = QueueController(
                kube=self.kube, store=self.store(conninfo), namespace=key[0], name=key[1],
                queue_name=queue, spec=spec, statistics=self.poller(conninfo),
                post_event=event_poster(object_reference(body)))
            if previous is not None:  # what was learned and reported stays
                current.recent, current.idle_since = previous.recent, previous.idle_since
                current.conditions, current.fields = previous.conditions, previous.fields
            self.controllers[key] = current
        current.spec = spec
        return current

    def close(self) -> None:
        for store in self.stores.values():
            store.close()
