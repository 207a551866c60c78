"""Two operator replicas electing a leader through kopf's peering (KUBETASKS_PEERING): only the
leader acts; the standby takes over when the leader is killed (after the leader's lifetime) and
at once when it stops gracefully (it removes itself from the peering object)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from localcluster import sample_tasks as queue_tasks
from localcluster.controlplane import ControlPlane
from localcluster.operator import REPO, Cluster, OperatorProcess, backend_for, taskqueue
from localcluster.polling import wait_until

pytestmark = [pytest.mark.cluster, pytest.mark.usefixtures("local_kubelet", "crd", "peering_crd")]

PEERING = "kubetasks"


@pytest.fixture(scope="module")
def peering_crd(control_plane: ControlPlane) -> None:
    control_plane.kubectl("apply", "-f", str(REPO / "crds" / "kopfpeering.yaml"))
    control_plane.kubectl("wait", "--for=condition=Established", "--timeout=30s",
                          "crd/kopfpeerings.kopf.dev", "crd/clusterkopfpeerings.kopf.dev")


@pytest.fixture
def replicas(control_plane: ControlPlane, namespace: str, tmp_path: Path) -> Iterator[Any]:
    """``start(name, lifetime)``: an operator replica electing in the namespace's peering."""
    started: list[OperatorProcess] = []

    def start(name: str, lifetime: int) -> OperatorProcess:
        (tmp_path / name).mkdir()
        replica = OperatorProcess(control_plane, namespace, tmp_path / name)
        replica.env.update(KUBETASKS_PEERING=PEERING, KUBETASKS_PEERING_LIFETIME=str(lifetime),
                           POD_ID=name)  # kopf's identity of the replica in the peering object
        replica.start()
        started.append(replica)
        return replica

    yield start
    for replica in started:
        replica.stop()
        print(f"--- {replica.env['POD_ID']}\n{replica.log()[-4000:]}")


def peers(cluster: Cluster) -> set[str]:
    body = cluster.custom.get_namespaced_custom_object("kopf.dev", "v1", cluster.namespace,
                                                       "kopfpeerings", PEERING)
    return set(body.get("status") or {})


def acting(replica: OperatorProcess) -> bool:
    """kopf logs this when a replica finds no live peer of a higher priority."""
    return "Resuming operations after the pause" in replica.log()


def test_the_standby_scales_after_the_leader_is_killed_or_stops(
        cluster: Cluster, replicas: Any, dsn: str) -> None:
    # The killed leader's entry expires after 10 s; the graceful one's would only after 600 s.
    first = replicas("first", 10)
    cluster.create_taskqueue(taskqueue("ha", "ha", max_replicas=2))
    wait_until(lambda: cluster.replicas("ha") == 0, timeout=60, what="the leader's Deployment")
    second = replicas("second", 600)
    wait_until(lambda: peers(cluster) == {"first", "second"}, timeout=60,
               what="the younger replica in the peering object")
    assert acting(first) and not acting(second)
    assert "reconciled" not in second.log()

    first.kill()  # no chance to leave the peering object
    killed_at = time.monotonic()
    backend = backend_for(dsn)
    queue_tasks.long.using(backend=backend, queue_name="ha").enqueue_many([(30.0,)] * 4)
    wait_until(lambda: (cluster.replicas("ha") or 0) >= 1, timeout=120,
               what="the standby to take over and scale up")
    print(f"after SIGKILL of the leader (lifetime 10 s): scaled by the standby in "
          f"{time.monotonic() - killed_at:.1f} s")
    assert acting(second)
    assert '"message": "scaled"' in second.log()

    third = replicas("third", 600)
    wait_until(lambda: "third" in peers(cluster), timeout=60, what="the new replica in the peering object")
    assert not acting(third)
    stopping_at = time.monotonic()
    second.stop()  # SIGTERM: it removes its entry on the way out
    assert "second" not in peers(cluster)
    # Well inside second's 600 s lifetime: only its leaving can have woken the third.
    wait_until(lambda: acting(third), timeout=60,
               what="the standby to resume when the leader left")
    print(f"after SIGTERM of the leader (lifetime 600 s): the standby resumed in "
          f"{time.monotonic() - stopping_at:.1f} s")
    cluster.custom.patch_namespaced_custom_object(
        "kubetasks.io", "v1alpha1", cluster.namespace, "taskqueues", "ha",
        {"spec": {"scaling": {"minReplicas": 3, "maxReplicas": 3}}},
        _content_type="application/merge-patch+json")
    wait_until(lambda: cluster.replicas("ha") == 3, timeout=90,
               what="the new leader to follow the spec and scale to its minimum")
    assert '"message": "scaled"' in third.log()
