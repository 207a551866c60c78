"""The statements the worker added to the store: its claim and its LISTEN connection."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import psycopg

from kubetasks.identity import WorkerIdentity
from kubetasks.request import EnqueueRequest
from kubetasks.result import TaskResultStatus
from kubetasks.store import Store

NOW = datetime.now(UTC)


def request(queue: str = "q", *, priority: int = 0, run_after: datetime | None = None,
            expected_at: datetime | None = None) -> EnqueueRequest:
    return EnqueueRequest(task_name="t", queue_name=queue, priority=priority, args=[],
                          kwargs={}, context={}, run_after=run_after, expected_at=expected_at,
                          max_attempts=1)


def identity(nonce: str = "n1") -> WorkerIdentity:
    return WorkerIdentity(pod_name="pod", pod_uid="uid", nonce=nonce)


def test_claim_keeps_claim_order_across_queues(store: Store) -> None:
    ids = [r.id for r in store.enqueue([
        request("a", priority=0),                                         # 0
        request("b", priority=5),                                         # 1
        request("a", priority=5, expected_at=NOW + timedelta(hours=1)),   # 2
        request("b", priority=9, run_after=NOW + timedelta(hours=1)),     # 3: not due
        request("c", priority=100),                                       # 4: not served
        request("b", priority=0, run_after=NOW - timedelta(minutes=5)),   # 5
    ])]
    cancelled = store.enqueue([request("a", priority=50)])[0].id
    assert store.cancel(cancelled)

    first = store.claim(["a", "b", "a"], 3, identity())
    rest = store.claim(["a", "b"], 10, identity())

    assert [r.id for r in first] == [ids[2], ids[1], ids[5]]
    assert [r.id for r in rest] == [ids[0]]
    assert all(r.state == TaskResultStatus.RUNNING and r.attempts == 1 and r.claim_id
               for r in first + rest)
    assert store.claim(["a", "b"], 10, identity()) == []


def test_concurrent_claims_per_queue_never_share_a_task(store: Store) -> None:
    store.enqueue([request("a" if n % 2 else "b") for n in range(400)])
    claimed: list[list[int]] = [[] for _ in range(4)]

    def claim_all(index: int) -> None:
        while batch := store.claim(["a", "b"], 7, identity(f"n{index}")):
            claimed[index].extend(r.id for r in batch)

    threads = [threading.Thread(target=claim_all, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [task_id for ids in claimed for task_id in ids]
    assert len(every) == len(set(every)) == 400


def test_listen_connection_receives_enqueue_notifications(store: Store) -> None:
    with store.listen() as conn:
        store.enqueue([request("a")])
        notices = list(conn.notifies(timeout=5, stop_after=1))
    assert [n.payload for n in notices] == ["a"]
    assert isinstance(conn, psycopg.Connection)
