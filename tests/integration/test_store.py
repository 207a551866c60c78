"""The store's statements against a real PostgreSQL: claim order, fencing, lost tasks, stats."""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import asdict, replace
from datetime import UTC, datetime, timedelta, timezone

import psycopg
import pytest

from kubetasks.identity import WorkerIdentity
from kubetasks.queries import query
from kubetasks.records import QueueSettings, QueueStats, StatisticsRequest
from kubetasks.request import EnqueueRequest
from kubetasks.result import TaskResultStatus
from kubetasks.store import ANALYZE_AFTER, CHANNEL, COPY_AFTER, Outcome, Store
from tests.integration.worker_process import learned_durations

NOW = datetime.now(UTC)


PARIS_SUMMER = timezone(timedelta(hours=2))


def request(queue: str = "q", name: str = "t", *, priority: int = 0,
            run_after: datetime | None = None, expected_at: datetime | None = None,
            max_attempts: int = 1) -> EnqueueRequest:
    return EnqueueRequest(task_name=name, queue_name=queue, priority=priority, args=[], kwargs={},
                          context={}, run_after=run_after, expected_at=expected_at,
                          max_attempts=max_attempts)


def worker(pod: str = "pod-a", nonce: str = "n1") -> WorkerIdentity:
    return WorkerIdentity(pod_name=pod, pod_uid=f"uid-{pod}", nonce=nonce)


def test_claim_order_is_priority_then_deadline_then_run_after_then_id(store: Store) -> None:
    past = NOW - timedelta(minutes=10)
    ids = [r.id for r in store.enqueue([
        request(priority=0),                                               # 0
        request(priority=5),                                               # 1
        request(priority=5, expected_at=NOW + timedelta(hours=2)),         # 2
        request(priority=5, expected_at=NOW + timedelta(hours=1)),         # 3
        request(priority=0, run_after=past),                               # 4
        request(priority=9, run_after=NOW + timedelta(hours=1)),           # 5: not due
        request(queue="other", priority=100),                              # 6: other queue
    ])]

    claimed = store.claim(["q"], 10, worker())

    assert [r.id for r in claimed] == [ids[3], ids[2], ids[1], ids[4], ids[0]]
    assert all(r.state == TaskResultStatus.RUNNING and r.attempts == 1 for r in claimed)
    assert {r.worker_pod for r in claimed} == {"pod-a"}
    assert len({r.claim_id for r in claimed}) == 5


def test_claimed_arguments_are_read_as_stored_each_task_its_own(store: Store) -> None:
    given = [[], {}, ["café", {"n": 1, "deep": [None, True, 2.5]}], {"to": "ünï", "ids": [1, 2]}]
    store.enqueue([replace(request(), args=args, kwargs=kwargs)
                   for args, kwargs in [([], {}), ([], {}), (given[2], given[3])]])

    first, second, third = sorted(store.claim(["q"], 3, worker()), key=lambda r: r.id)

    first.args.append("changed")
    first.kwargs["changed"] = True
    assert (second.args, second.kwargs, second.context, second.errors) == ([], {}, {}, [])
    assert (third.args, third.kwargs) == (given[2], given[3])


@pytest.mark.parametrize("limited", [False, True], ids=["claim_tasks", "claim_limited_tasks"])
def test_a_claimed_record_is_the_row_as_read_back(store: Store, limited: bool) -> None:
    # The claim builds its records from the columns' positions: every field must land in its place.
    if limited:
        store.set_limits(QueueSettings("q", max_running=5))
    task_id = store.enqueue([replace(
        request(max_attempts=3, expected_at=NOW + timedelta(hours=1)),
        args=["a", 1], kwargs={"k": [True]}, context={"tenant": "t1"})])[0].id
    first = store.claim(["q"], 1, worker())[0]
    assert first.claim_id is not None
    store.retry(first.claim_id, datetime.now(UTC), json.dumps({"exception_class_path": "x.A"}))

    [claimed] = store.claim(["q"], 1, worker("pod-b"))

    assert claimed == store.get(task_id)
    assert (claimed.state, claimed.attempts, claimed.worker_pod, claimed.args, claimed.kwargs,
            claimed.context) == (TaskResultStatus.RUNNING, 2, "pod-b", ["a", 1], {"k": [True]},
                                 {"tenant": "t1"})
    assert [error.exception_class_path for error in claimed.errors] == ["x.A"]
    assert claimed.started_at == first.started_at and claimed.expected_at is not None


def test_claim_takes_at_most_limit(store: Store) -> None:
    store.enqueue([request() for _ in range(5)])
    assert len(store.claim(["q"], 2, worker())) == 2
    assert len(store.claim(["q"], 10, worker())) == 3
    assert store.claim(["q"], 10, worker()) == []


def test_writes_are_fenced_on_the_claim(store: Store) -> None:
    store.enqueue([request()])
    first = store.claim(["q"], 1, worker("pod-a"))[0]
    assert first.claim_id is not None
    store.requeue_pod("uid-pod-a", reason="pod deleted", max_lost=3)
    second = store.claim(["q"], 1, worker("pod-b"))[0]
    assert second.claim_id is not None and second.claim_id != first.claim_id

    # The zombie's late writes change nothing.
    assert store.complete([Outcome(first.claim_id, json.dumps("late"), 1.0)]) == {first.claim_id}
    assert store.fail(first.claim_id, json.dumps({"message": "late"})) is False
    assert store.retry(first.claim_id, NOW, json.dumps({})) is False
    assert store.heartbeat([first.claim_id, second.claim_id]) == {second.claim_id}

    assert store.complete([Outcome(second.claim_id, json.dumps("fresh"), 1.0)]) == set()
    done = store.get(second.id)
    assert done.state == TaskResultStatus.SUCCESSFUL and done.return_value == "fresh"
    assert done.worker_ids == ["pod-a/n1", "pod-b/n1"]


def test_retry_and_fail_keep_errors(store: Store) -> None:
    task_id = store.enqueue([request(max_attempts=2)])[0].id
    claim = store.claim(["q"], 1, worker())[0].claim_id
    assert claim is not None
    later = datetime.now(UTC) + timedelta(seconds=30)
    assert store.retry(claim, later, json.dumps({"exception_class_path": "x.A", "traceback": "tb1"}))
    retried = store.get(task_id)
    assert retried.state == TaskResultStatus.READY and retried.run_after == later
    assert store.claim(["q"], 1, worker()) == []  # not due yet

    with psycopg.connect(store.conninfo, autocommit=True) as conn:
        conn.execute("UPDATE kubetasks_tasks SET run_after = now() WHERE id = %s", (task_id,))
    claim = store.claim(["q"], 1, worker())[0].claim_id
    assert claim is not None
    assert store.fail(claim, json.dumps({"exception_class_path": "x.B", "traceback": "tb2"}))
    failed = store.get(task_id)
    assert failed.state == TaskResultStatus.FAILED and failed.attempts == 2
    assert [e.exception_class_path for e in failed.errors] == ["x.A", "x.B"]
    assert failed.finished_at is not None


def test_release_puts_back_without_burning_an_attempt(store: Store) -> None:
    task_id = store.enqueue([request()])[0].id
    claim = store.claim(["q"], 1, worker())[0].claim_id
    assert store.release([claim] if claim else []) == 1
    back = store.get(task_id)
    assert back.state == TaskResultStatus.READY and back.attempts == 0 and back.lost_count == 0


def test_requeue_of_a_restarted_pod_spares_the_live_process(store: Store) -> None:
    store.enqueue([request(), request()])
    old = store.claim(["q"], 1, worker("pod-a", nonce="old"))[0]
    new = store.claim(["q"], 1, worker("pod-a", nonce="new"))[0]

    moved = store.requeue_pod("uid-pod-a", reason="container restarted", max_lost=3,
                              except_nonce="new")

    assert [m.task_id for m in moved] == [old.id]
    assert store.get(old.id).state == TaskResultStatus.READY
    assert store.get(old.id).lost_count == 1
    assert "container restarted" in store.get(old.id).errors[-1].message
    assert store.get(new.id).state == TaskResultStatus.RUNNING


def test_a_task_lost_too_often_fails_with_the_reason(store: Store) -> None:
    task_id = store.enqueue([request()])[0].id
    for _ in range(2):
        store.claim(["q"], 1, worker())
        store.requeue_pod("uid-pod-a", reason="OOMKilled", max_lost=1)
    final = store.get(task_id)
    assert final.state == TaskResultStatus.FAILED
    assert final.lost_count == 2
    assert "more than maxLost=1" in final.errors[-1].message
    assert final.errors[-1].exception_class_path == "kubetasks.exceptions.TaskLost"


def test_requeue_absent_pods_and_stale_heartbeats(store: Store) -> None:
    store.enqueue([request(), request(), request()])
    live = store.claim(["q"], 1, worker("live"))[0]
    gone = store.claim(["q"], 1, worker("gone"))[0]
    stale = store.claim(["q"], 1, worker("stale"))[0]
    with psycopg.connect(store.conninfo, autocommit=True) as conn:
        conn.execute("UPDATE kubetasks_tasks SET last_attempted_at = now() - interval '1 minute'")
        conn.execute("UPDATE kubetasks_tasks SET heartbeat_at = now() - interval '10 minutes'"
                     " WHERE id = %s", (stale.id,))

    absent = store.requeue_absent_pods("q", ["uid-live", "uid-stale"], reason="pod gone", max_lost=3)
    assert [t.task_id for t in absent] == [gone.id]
    stale_moved = store.requeue_stale(timedelta(minutes=5), reason="no heartbeat", max_lost=3)
    assert [t.task_id for t in stale_moved] == [stale.id]
    assert store.get(live.id).state == TaskResultStatus.RUNNING


def test_fresh_claims_of_unknown_pods_are_spared(store: Store) -> None:
    store.enqueue([request()])
    store.claim(["q"], 1, worker("new-pod"))
    assert store.requeue_absent_pods("q", [], reason="pod gone", max_lost=3) == []


def test_cancel_ends_a_ready_task_and_asks_the_worker_of_a_running_one(store: Store) -> None:
    first, second = store.enqueue([request(), request()])
    assert store.cancel(first.id, by="ops") is True
    assert store.get(first.id).state == TaskResultStatus.CANCELLED
    claimed = store.claim(["q"], 10, worker())
    assert [r.id for r in claimed] == [second.id]
    claim = claimed[0].claim_id
    assert claim is not None
    assert store.keep_claims([claim]) == ({claim}, set())

    assert store.cancel(second.id, by="ops") is True
    assert store.cancel(second.id) is False  # already asked
    running = store.get(second.id)
    assert (running.state, running.cancelled_by) == (TaskResultStatus.RUNNING, "ops")
    assert store.keep_claims([claim]) == ({claim}, {claim})  # the worker learns of it

    assert store.cancel_running(claim) is True
    assert store.get(second.id).state == TaskResultStatus.CANCELLED
    assert store.cancel(second.id) is False


def test_a_task_asked_to_cancel_is_not_retried_nor_put_back(store: Store) -> None:
    tasks = store.enqueue([request(), request(), request(), request()])
    claims = [r.claim_id for r in store.claim(["q"], 10, worker()) if r.claim_id is not None]
    for task in tasks:
        store.cancel(task.id)
    store.retry(claims[0], datetime.now(UTC), '{"message": "failed"}')
    store.release([claims[1]])
    store.requeue_claims([claims[2]], reason="pod gone", max_lost=3)
    store.postpone(claims[3], datetime.now(UTC))  # a worker that does not know the task
    assert [store.get(t.id).state for t in tasks] == [TaskResultStatus.CANCELLED] * 4
    assert all(store.get(t.id).finished_at is not None for t in tasks)


def test_a_task_that_returns_before_its_worker_learns_of_a_cancel_keeps_its_outcome(
        store: Store) -> None:
    [task] = store.enqueue([request()])
    [claimed] = store.claim(["q"], 1, worker())
    assert claimed.claim_id is not None and store.cancel(task.id, by="ops@example") is True
    assert store.complete([Outcome(claimed.claim_id, json.dumps("done"), 0.1)]) == set()
    record = store.get(task.id)
    assert (record.state, record.return_value) == (TaskResultStatus.SUCCESSFUL, "done")
    assert record.cancelled_at is not None and record.cancelled_by == "ops@example"


def test_queue_stats(store: Store) -> None:
    now = datetime.now(UTC)
    store.enqueue([
        request("a"), request("a"),
        request("a", run_after=now + timedelta(hours=1)),
        request("a", run_after=now, expected_at=now + timedelta(milliseconds=1)),
        request("b"),
    ])
    store.claim(["b"], 1, worker())
    import time
    time.sleep(0.01)

    stats = {s.queue_name: s for s in store.queue_stats()}
    assert (stats["a"].ready, stats["a"].scheduled, stats["a"].running, stats["a"].overdue) == (3, 1, 0, 1)
    assert (stats["b"].ready, stats["b"].running) == (0, 1)
    assert [s.queue_name for s in store.queue_stats(["b"])] == ["b"]
    assert store.busy_pods("b") == {"uid-pod-a": 1}


def test_deadline_work_accumulates_estimates_in_claim_order(store: Store) -> None:
    with psycopg.connect(store.conninfo, autocommit=True) as conn:
        conn.execute("INSERT INTO kubetasks_durations (task_name, mean_seconds) VALUES ('slow', 10)")
    store.enqueue([
        request(name="slow", priority=1),                                        # 10 s, first
        request(name="fast", expected_at=NOW + timedelta(hours=2)),              # 2 s default
        request(name="slow", expected_at=NOW + timedelta(hours=1)),              # 10 s
        request(name="fast"),                                                    # no deadline
    ])

    work = store.deadline_work("q", default_seconds=2.0)
    assert store.backlog_work("q", default_seconds=2.0) == 24.0

    # The slow one with a deadline is second (10 s after the first 10 s), the fast one third.
    assert [(w.work_seconds, w.position) for w in work] == [(20.0, 2), (22.0, 3)]


def test_a_task_name_that_never_finished_is_estimated_from_its_running_age(store: Store) -> None:
    # Three "rebuild" tasks, none ever finished: one runs since 100 s ago, two wait.
    store.enqueue([request(name="rebuild", expected_at=NOW + timedelta(hours=1)) for _ in range(3)])
    (claim,) = store.claim(["q"], 1, worker())
    with psycopg.connect(store.conninfo, autocommit=True) as conn:
        conn.execute("UPDATE kubetasks_tasks SET last_attempted_at = now() - interval '100 seconds' "
                     "WHERE state = 'RUNNING'")

    # Twice the age: 200 s each, not the 1 s default that would call it 3 s of work.
    assert store.backlog_work("q") == pytest.approx(600.0, rel=0.01)
    assert [w.work_seconds for w in store.deadline_work("q")] == [
        pytest.approx(200.0, rel=0.01), pytest.approx(400.0, rel=0.01)]

    # Once one finishes, its learned duration is the estimate.
    store.complete([Outcome(claim.claim_id, "null", 30.0)])
    assert store.backlog_work("q") == pytest.approx(60.0)


def test_queue_statistics_reads_in_one_statement_what_the_separate_queries_read(store: Store) -> None:
    with psycopg.connect(store.conninfo, autocommit=True) as conn:
        conn.execute("INSERT INTO kubetasks_durations (task_name, mean_seconds) VALUES ('slow', 10)")
    store.enqueue([
        request(name="slow", priority=1),
        request(name="fast", expected_at=NOW + timedelta(hours=2)),
        request(name="slow", expected_at=NOW + timedelta(hours=1)),
        request(name="fast"),
        request(name="fast", run_after=NOW + timedelta(hours=1)),
        request(name="late", expected_at=NOW - timedelta(minutes=1)),
    ])
    store.claim(["q"], 1, worker())
    store.set_limits(QueueSettings("q", max_running=7))

    seen = store.queue_statistics("q", scan_limit=100)

    (stats,) = store.queue_stats(["q"])
    assert seen.stats == QueueStats(**{**asdict(stats), "count_limit": 100})
    assert (seen.stats.ready, seen.stats.scheduled, seen.stats.running, seen.stats.overdue) == (4, 1, 1, 1)
    assert not seen.stats.capped
    assert seen.busy_pods == store.busy_pods("q") == {"uid-pod-a": 1}
    assert seen.work_seconds == store.backlog_work("q")
    assert seen.deadlines == tuple(store.deadline_work("q"))
    assert seen.oldest_ready_seconds == pytest.approx(store.oldest_ready_seconds("q"), abs=1.0)
    assert seen.settings == QueueSettings("q", max_running=7)
    assert (seen.scanned, seen.scan_limit) == (4, 100)


def test_the_statistics_of_several_queues_come_in_one_statement_each_as_read_alone(
        store: Store) -> None:
    store.enqueue([request(queue="a", expected_at=NOW + timedelta(hours=1)) for _ in range(3)]
                  + [request(queue="b") for _ in range(5)])
    store.claim(["b"], 2, worker())
    store.set_limits(QueueSettings("b", max_running=4))
    wanted = [StatisticsRequest("b", scan_limit=3), StatisticsRequest("empty", scan_limit=10),
              StatisticsRequest("a", scan_limit=100, horizon=timedelta(minutes=5))]

    together = store.queues_statistics(wanted)

    assert list(together) == wanted
    for one in wanted:
        alone = store.queue_statistics(one.queue_name, scan_limit=one.scan_limit,
                                       horizon=one.horizon)
        assert replace(together[one], oldest_ready_seconds=0.0) == replace(
            alone, oldest_ready_seconds=0.0)
    assert (together[wanted[0]].stats.ready, together[wanted[0]].stats.capped) == (3, True)
    assert together[wanted[0]].settings.max_running == 4
    assert together[wanted[1]].stats.ready == 0 and together[wanted[1]].deadlines == ()
    assert [d.position for d in together[wanted[2]].deadlines] == [1, 2, 3]


def test_queue_statistics_counts_up_to_the_scan_limit_and_says_so(store: Store) -> None:
    # Nine tasks past their deadline; one of them runs.
    store.enqueue([request(name="job", expected_at=NOW - timedelta(minutes=9 - i)) for i in range(9)])
    store.claim(["q"], 1, worker())

    seen = store.queue_statistics("q", scan_limit=5)

    assert (seen.stats.ready, seen.stats.running, seen.stats.overdue) == (5, 1, 5)  # at least 5
    assert (seen.stats.count_limit, seen.stats.capped) == (5, True)
    assert [w.position for w in seen.deadlines] == [1, 2, 3, 4, 5]
    assert seen.work_seconds == 6.0  # the running one and the first five, at the 1 s default
    assert store.queue_statistics("q", scan_limit=8).stats.capped  # 8 of 8: "at least 8"
    exact = store.queue_statistics("q", scan_limit=10).stats
    assert (exact.ready, exact.overdue, exact.capped) == (8, 9, False)
    with pytest.raises(ValueError, match="scan_limit 0 is invalid"):
        store.queue_statistics("q", scan_limit=0)


def test_complete_learns_mean_durations(store: Store) -> None:
    store.enqueue([request(name="job") for _ in range(4)])
    claims = store.claim(["q"], 4, worker())
    store.complete([Outcome(c.claim_id, "null", seconds) for c, seconds in
                    zip(claims, [1.0, 3.0], strict=False) if c.claim_id])
    assert learned_durations(store) == {"job": pytest.approx(2.0)}
    store.complete([Outcome(c.claim_id, "null", 10.0) for c in claims[2:] if c.claim_id])
    learned = learned_durations(store)["job"]
    assert 2.0 < learned <= 10.0


def test_complete_folds_only_the_durations_of_the_names_it_is_given(store: Store) -> None:
    store.enqueue([request(name=name) for name in ("a", "b", "a")])
    first, second, third = store.claim(["q"], 3, worker())
    assert first.claim_id and second.claim_id and third.claim_id
    assert store.complete([Outcome(first.claim_id, "null", 4.0),
                           Outcome(second.claim_id, "null", 9.0)], learn=["b"]) == set()
    assert learned_durations(store) == {"b": pytest.approx(9.0)}
    store.complete([Outcome(third.claim_id, "null", 2.0)], learn=[])
    assert learned_durations(store) == {"b": pytest.approx(9.0)}
    assert {r.state for r in store.list_tasks(limit=10)} == {TaskResultStatus.SUCCESSFUL}


def test_prune_deletes_only_finished_tasks_past_retention(store: Store) -> None:
    records = store.enqueue([request() for _ in range(4)])
    claims = store.claim(["q"], 3, worker())
    store.complete([Outcome(c.claim_id, "1", 0.1) for c in claims[:2] if c.claim_id])
    assert claims[2].claim_id is not None
    store.fail(claims[2].claim_id, json.dumps({}))
    with psycopg.connect(store.conninfo, autocommit=True) as conn:
        conn.execute("UPDATE kubetasks_tasks SET finished_at = now() - interval '2 days'"
                     " WHERE id = %s", (claims[0].id,))

    assert store.prune(successful=timedelta(days=1), failed=timedelta(days=1)) == 1
    remaining = {r.id for r in store.list_tasks(limit=10)}
    assert remaining == {r.id for r in records} - {claims[0].id}
    assert store.prune(successful=timedelta(0), failed=timedelta(0), batch=1, max_batches=1) == 1
    assert store.prune(successful=timedelta(0), failed=timedelta(0)) == 1


def test_enqueue_notifies_listeners_on_commit(store: Store) -> None:
    received: list[str] = []
    listener = store.connect()
    listener.execute(f"LISTEN {CHANNEL}")

    def listen() -> None:
        for note in listener.notifies(timeout=5, stop_after=1):
            received.append(note.payload)

    thread = threading.Thread(target=listen)
    thread.start()
    store.enqueue([request("emails"), request("emails")])
    thread.join()
    listener.close()
    assert received == ["emails"]


def test_requeue_after_a_container_restart_takes_only_older_claims(store: Store) -> None:
    store.enqueue([request(), request()])
    before_restart = store.claim(["q"], 1, worker("pod-a", nonce="old"))[0]
    with psycopg.connect(store.conninfo, autocommit=True) as conn:
        conn.execute("UPDATE kubetasks_tasks SET last_attempted_at = now() - interval '1 minute'"
                     " WHERE id = %s", (before_restart.id,))
    restarted_at = datetime.now(UTC) - timedelta(seconds=1)
    after_restart = store.claim(["q"], 1, worker("pod-a", nonce="new"))[0]

    moved = store.requeue_pod("uid-pod-a", reason="container restarted (OOMKilled)", max_lost=3,
                              claimed_before=restarted_at)

    assert [m.task_id for m in moved] == [before_restart.id]
    assert store.get(after_restart.id).state == TaskResultStatus.RUNNING


def test_next_run_after_is_the_earliest_ready_time_of_the_queues(store: Store) -> None:
    now = datetime.now(UTC)
    store.enqueue([request("a", run_after=now + timedelta(hours=2)),
                   request("b", run_after=now + timedelta(hours=1)),
                   request("c", run_after=now + timedelta(minutes=1))])
    assert store.next_run_after(["a", "b"]) == now + timedelta(hours=1)
    assert store.next_run_after(["x"]) is None


def test_the_absent_pod_sweep_leaves_other_deployments_workers_alone(store: Store) -> None:
    store.enqueue([request(), request()])
    mine = store.claim(["q"], 1, worker("emails-worker-abc"))[0]
    other = store.claim(["q"], 1, worker("laptop"))[0]
    with psycopg.connect(store.conninfo, autocommit=True) as conn:
        conn.execute("UPDATE kubetasks_tasks SET last_attempted_at = now() - interval '1 minute'")

    moved = store.requeue_absent_pods("q", [], reason="pod gone", max_lost=3,
                                      pod_name_prefix="emails-worker-")

    assert [t.task_id for t in moved] == [mine.id]
    assert store.get(other.id).state == TaskResultStatus.RUNNING


def test_a_task_past_its_deadline_can_still_be_retried(store: Store) -> None:
    now = datetime.now(UTC)
    task_id = store.enqueue([request(expected_at=now + timedelta(seconds=1), max_attempts=3)])[0].id
    claim = store.claim(["q"], 1, worker())[0].claim_id
    assert claim is not None

    assert store.retry(claim, now + timedelta(minutes=5), json.dumps({"message": "try later"}))
    assert store.get(task_id).state == TaskResultStatus.READY


def test_a_deadline_set_a_moment_ago_is_accepted(store: Store) -> None:
    just_now = datetime.now(UTC) - timedelta(milliseconds=1)  # the database's now() is later
    record = store.enqueue([request(expected_at=just_now)])[0]
    assert record.run_after == just_now


def test_a_column_added_by_a_newer_migration_does_not_break_reads(store: Store) -> None:
    task_id = store.enqueue([request()])[0].id
    with psycopg.connect(store.conninfo, autocommit=True) as conn:
        conn.execute("ALTER TABLE kubetasks_tasks ADD COLUMN added_later text DEFAULT 'x'")
    assert store.get(task_id).id == task_id
    assert [r.id for r in store.claim(["q"], 1, worker())] == [task_id]


@pytest.mark.parametrize("count", [1, 3])
def test_an_enqueued_record_is_the_row_read_back(store: Store, count: int) -> None:
    in_an_hour = NOW + timedelta(hours=1)
    requests = [EnqueueRequest(
        task_name="t", queue_name="q", priority=5, args=[1, "two", [3.5, None]],
        kwargs={"b": {"c": True}, "a": []}, context={"tenant": "x"}, run_after=run_after,
        expected_at=in_an_hour, max_attempts=3, unique_key=key,
        unique_while=None if key is None else "ready")
        for run_after, key in [(None, None), (NOW + timedelta(minutes=5), "k"), (None, "j")][:count]]
    written = store.enqueue(requests)
    assert written == [store.get(record.id) for record in written]
    assert written[0].run_after <= datetime.now(UTC)  # the database's now(), not the client's


def test_a_batch_sent_by_copy_gives_the_records_read_back_in_order(store: Store) -> None:
    requests = [EnqueueRequest(
        task_name=f"t{i % 3}", queue_name=f"q{i % 2}", priority=i % 5, args=[i, "two\ttab\n"],
        kwargs={"b": {"c": "\\"}}, context={"tenant": "x"},
        run_after=(NOW + timedelta(minutes=5)).astimezone(PARIS_SUMMER) if i % 7 == 0 else None,
        expected_at=NOW + timedelta(hours=1) if i % 2 else None, max_attempts=3)
        for i in range(COPY_AFTER)]
    written = store.enqueue(requests)
    assert [(r.task_name, r.args, r.priority) for r in written] == [
        (q.task_name, q.args, q.priority) for q in requests]
    read_back = [store.get(record.id) for record in written]
    assert written == read_back
    # the times as the database gives them, in the session's time zone, not the caller's
    assert [str(r.run_after) for r in written] == [str(r.run_after) for r in read_back]
    assert written == sorted(written, key=lambda record: int(record.id))


def test_a_batch_sent_by_copy_wakes_each_of_its_queues_once(store: Store) -> None:
    with psycopg.connect(store.conninfo, autocommit=True) as listener:
        listener.execute(f"LISTEN {CHANNEL}")
        store.enqueue([request(queue=f"q{i % 2}") for i in range(COPY_AFTER)])
        assert sorted(n.payload for n in listener.notifies(timeout=1)) == ["q0", "q1"]


def test_a_role_that_may_not_draw_ids_itself_still_enqueues_a_large_batch(store: Store) -> None:
    """COPY draws the ids with nextval(), which needs USAGE on the sequence; an INSERT's
    identity default does not. Such a role's batch goes as one INSERT, whole."""
    role = f"writer_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(store.conninfo, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {role} LOGIN")
        try:
            admin.execute(f"GRANT SELECT, INSERT ON kubetasks_tasks, kubetasks_queues TO {role}")
            dsn = psycopg.conninfo.make_conninfo(store.conninfo, user=role)
            with Store(dsn) as limited:
                written = limited.enqueue([request() for _ in range(COPY_AFTER)])
            assert len(written) == COPY_AFTER
            assert written == [store.get(record.id) for record in written]
        finally:
            admin.execute(f"DROP OWNED BY {role}")
            admin.execute(f"DROP ROLE {role}")


@pytest.mark.parametrize("autocommit", [False, True])
def test_a_batch_sent_by_copy_on_the_callers_connection_is_in_its_transaction(
        store: Store, autocommit: bool) -> None:
    batch = [request() for _ in range(COPY_AFTER)]
    with psycopg.connect(store.conninfo, autocommit=autocommit) as conn:
        if autocommit:  # committed at once, as one INSERT would be
            store.enqueue(batch, connection=conn)
            store.enqueue(batch, connection=conn)
            assert len(store.list_tasks(limit=10_000)) == 2 * COPY_AFTER
            return
        with pytest.raises(RuntimeError), conn.transaction():
            store.enqueue(batch, connection=conn)
            store.enqueue(batch, connection=conn)  # twice in one transaction
            raise RuntimeError("the application's transaction fails")
        assert store.list_tasks(limit=10) == []
        with conn.transaction():
            written = store.enqueue(batch, connection=conn)
    assert [r.id for r in store.list_tasks(limit=10_000)][::-1] == [r.id for r in written]


def test_a_large_batch_is_claimed_in_claim_order_before_autovacuum_analyzes(store: Store) -> None:
    """Without statistics the planner may sort the whole backlog on every claim: whether it
    does depends on the sizes of the indexes, so the statistics are checked as well."""
    store.enqueue([request() for _ in range(ANALYZE_AFTER)])
    with psycopg.connect(store.conninfo) as conn:
        assert conn.execute(query("planner_rows")).fetchone() == (ANALYZE_AFTER,)
        plan = "\n".join(row[0] for row in conn.execute(
            "EXPLAIN " + query("claim_tasks"), {"queue_names": ["q"], "limit": 8, "pod_name": "p",
                                                 "pod_uid": "u", "nonce": "n", "worker_id": "w"}))
    assert "kubetasks_tasks_claim_order" in plan
    assert "Sort Key: kubetasks_tasks.priority" not in plan
