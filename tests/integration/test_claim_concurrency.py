"""Many concurrent claimers: every task is claimed exactly once (property-based)."""

from __future__ import annotations

import threading
from collections import Counter

import psycopg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubetasks.identity import WorkerIdentity
from kubetasks.request import EnqueueRequest
from kubetasks.store import Outcome, Store


def requests(count: int, queues: list[str]) -> list[EnqueueRequest]:
    return [EnqueueRequest(task_name="t", queue_name=queues[i % len(queues)], priority=i % 7 - 3,
                           args=[i], kwargs={}, context={}, run_after=None, expected_at=None,
                           max_attempts=1) for i in range(count)]


def drain(store: Store, queues: list[str], batch_sizes: list[int],
          enqueue_meanwhile: int = 0) -> Counter[int]:
    """Run one claimer thread per batch size until the queues are empty; count claims per id."""
    claims: Counter[int] = Counter()
    lock = threading.Lock()
    start = threading.Barrier(len(batch_sizes) + 1)
    arrivals_done = threading.Event()

    def claimer(index: int, batch: int) -> None:
        me = WorkerIdentity(pod_name=f"pod-{index}", pod_uid=f"uid-{index}", nonce="n")
        start.wait()
        idle_rounds = 0
        while idle_rounds < 3 or not arrivals_done.is_set():
            got = store.claim(queues, batch, me)
            idle_rounds = 0 if got else idle_rounds + 1
            with lock:
                claims.update(r.id for r in got)
            store.complete([Outcome(r.claim_id, "null", 0.0) for r in got if r.claim_id])

    threads = [threading.Thread(target=claimer, args=(i, b)) for i, b in enumerate(batch_sizes)]
    for thread in threads:
        thread.start()
    start.wait()
    if enqueue_meanwhile:
        store.enqueue(requests(enqueue_meanwhile, queues))
    arrivals_done.set()
    for thread in threads:
        thread.join(timeout=60)
    return claims


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(
    task_count=st.integers(min_value=1, max_value=300),
    batch_sizes=st.lists(st.integers(min_value=1, max_value=40), min_size=2, max_size=8),
    queues=st.sampled_from([["q"], ["q", "r"], ["a", "b", "c"]]),
)
def test_every_task_is_claimed_exactly_once(store: Store, task_count: int,
                                            batch_sizes: list[int], queues: list[str]) -> None:
    with psycopg.connect(store.conninfo, autocommit=True) as conn:
        conn.execute("TRUNCATE kubetasks_tasks")
    ids = {r.id for r in store.enqueue(requests(task_count, queues))}

    claims = drain(store, queues, batch_sizes)

    assert set(claims) == ids
    assert max(claims.values()) == 1
    assert {s.queue_name: s.ready + s.running for s in store.queue_stats()} == {}


def test_claims_stay_exactly_once_while_tasks_arrive(store: Store) -> None:
    store.enqueue(requests(500, ["q"]))
    claims = drain(store, ["q"], [1, 5, 17, 50], enqueue_meanwhile=500)
    assert len(claims) == 1000
    assert set(claims.values()) == {1}
