"""Unique tasks on PostgreSQL: one live task per key, under concurrent enqueues and inside the
caller's transaction."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import psycopg
import pytest

from kubetasks import TaskResultStatus, task
from kubetasks.backends import PostgresBackend
from kubetasks.exceptions import DuplicateTaskError
from kubetasks.identity import WorkerIdentity
from kubetasks.store import Outcome, Store

WORKER = WorkerIdentity(pod_name="pod", pod_uid="uid", nonce="n")


@task(queue_name="unique")
def refresh(account_id: int) -> int:
    return account_id


def rows_with_key(dsn: str, key: str) -> list[tuple[int, str]]:
    with psycopg.connect(dsn) as conn:
        return [(int(r[0]), str(r[1])) for r in conn.execute(
            "SELECT id, state FROM kubetasks_tasks WHERE unique_key = %s ORDER BY id", [key])]


def test_a_second_enqueue_returns_the_live_task(backend: PostgresBackend, dsn: str) -> None:
    first = refresh.using(unique_key="account-1").enqueue(1)
    second = refresh.using(unique_key="account-1").enqueue(1)
    other = refresh.using(unique_key="account-2").enqueue(2)

    assert second.id == first.id and other.id != first.id
    assert rows_with_key(dsn, "account-1") == [(int(first.id), "READY")]


def test_raise_refuses_and_writes_nothing_of_the_call(backend: PostgresBackend, dsn: str) -> None:
    held = refresh.using(unique_key="k").enqueue(1)
    strict = refresh.using(unique_key=lambda account_id: "k" if account_id == 1 else f"k{account_id}",
                           unique_conflict="raise")

    with pytest.raises(DuplicateTaskError, match=f"unique_key 'k' .* held by task {held.id}") as caught:
        strict.enqueue_many([(5,), (1,)])

    assert caught.value.existing.id == held.id
    assert rows_with_key(dsn, "k5") == []


def test_enqueue_many_keys_each_call(backend: PostgresBackend, dsn: str) -> None:
    keyed = refresh.using(unique_key=lambda account_id: f"acc-{account_id}")
    results = keyed.enqueue_many([(1,), (2,), (1,), (3,), (2,)])

    ids = [r.id for r in results]
    assert ids[0] == ids[2] and ids[1] == ids[4] and len(set(ids)) == 3
    assert [len(rows_with_key(dsn, f"acc-{n}")) for n in (1, 2, 3)] == [1, 1, 1]


def test_ready_or_running_holds_the_key_until_the_task_finishes(
        backend: PostgresBackend, store: Store) -> None:
    first = refresh.using(unique_key="run").enqueue(1)
    [claimed] = store.claim(["unique"], 1, WORKER)
    assert claimed.claim_id is not None

    assert refresh.using(unique_key="run").enqueue(1).id == first.id  # RUNNING holds it
    store.retry(claimed.claim_id, datetime.now(UTC), '{"message": "again"}')
    assert refresh.using(unique_key="run").enqueue(1).id == first.id  # put back, still held
    [again] = store.claim(["unique"], 1, WORKER)
    assert again.claim_id is not None
    store.complete([Outcome(again.claim_id, "1", 0.0)])

    fresh = refresh.using(unique_key="run").enqueue(1)
    assert fresh.id != first.id and fresh.status == TaskResultStatus.READY


def test_ready_releases_the_key_once_the_task_starts(backend: PostgresBackend, store: Store) -> None:
    first = refresh.using(unique_key="r", unique_while="ready").enqueue(1)
    assert refresh.using(unique_key="r", unique_while="ready").enqueue(1).id == first.id

    store.claim(["unique"], 1, WORKER)
    second = refresh.using(unique_key="r", unique_while="ready").enqueue(1)

    assert second.id != first.id


def test_concurrent_enqueues_of_one_key_make_one_task(dsn: str) -> None:
    """Sixteen threads, each with its own connection, race to enqueue the same keys."""
    threads, rounds = 16, 10
    stores = [Store(dsn, max_size=1) for _ in range(threads)]
    seen: list[list[str]] = [[] for _ in range(rounds)]
    lock = threading.Lock()
    barrier = threading.Barrier(threads)

    def racer(index: int) -> None:
        task = refresh.using(backend=PostgresBackend(stores[index]))
        for round_ in range(rounds):
            barrier.wait()
            result = task.using(unique_key=f"race-{round_}").enqueue(round_)
            with lock:
                seen[round_].append(result.id)

    workers = [threading.Thread(target=racer, args=(i,)) for i in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join(timeout=120)
    for store in stores:
        store.close()

    for round_, ids in enumerate(seen):
        assert len(ids) == threads and len(set(ids)) == 1
        assert [i for i, _ in rows_with_key(dsn, f"race-{round_}")] == [int(ids[0])]


@pytest.mark.parametrize("outcome", ["commit", "rollback"])
def test_a_key_held_in_an_open_transaction(backend: PostgresBackend, dsn: str,
                                           outcome: str) -> None:
    """An enqueue waits for the transaction holding the key: it gets that task if it commits,
    and writes its own if it rolls back."""
    got: list[str] = []
    with psycopg.connect(dsn) as conn:
        held = refresh.using(connection=conn, unique_key="tx").enqueue(1)
        racer = threading.Thread(target=lambda: got.append(
            refresh.using(unique_key="tx").enqueue(1).id))
        racer.start()
        racer.join(timeout=0.5)
        assert racer.is_alive()  # waiting for the holder's transaction
        conn.commit() if outcome == "commit" else conn.rollback()
    racer.join(timeout=30)

    rows = rows_with_key(dsn, "tx")
    assert len(rows) == 1 and got == [str(rows[0][0])]
    assert (got[0] == held.id) == (outcome == "commit")


def test_raise_inside_the_callers_transaction_keeps_it_usable(
        backend: PostgresBackend, dsn: str) -> None:
    refresh.using(unique_key="mine").enqueue(1)
    with psycopg.connect(dsn) as conn:
        kept = refresh.using(connection=conn).enqueue(2)
        with pytest.raises(DuplicateTaskError):
            refresh.using(connection=conn, unique_conflict="raise",
                          unique_key=lambda n: "mine" if n == 1 else f"other-{n}",
                          ).enqueue_many([(3,), (1,)])
        conn.commit()
    assert backend.get_result(kept.id).status == TaskResultStatus.READY
    assert len(rows_with_key(dsn, "mine")) == 1
    assert rows_with_key(dsn, "other-3") == []


def test_a_failed_task_cannot_run_again_while_a_newer_one_holds_its_key(
        backend: PostgresBackend, store: Store) -> None:
    first = refresh.using(unique_key="again").enqueue(1)
    [claimed] = store.claim(["unique"], 1, WORKER)
    assert claimed.claim_id is not None
    store.fail(claimed.claim_id, '{"message": "broken"}')
    newer = refresh.using(unique_key="again").enqueue(1)

    with pytest.raises(DuplicateTaskError, match=f"task {first.id} cannot run again while another"):
        store.rerun(first.id)
    assert store.get(first.id).state == TaskResultStatus.FAILED
    assert store.get(newer.id).state == TaskResultStatus.READY
