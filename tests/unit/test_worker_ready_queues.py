"""A worker serving every queue remembers which queues have READY tasks for a second; a change
that lands while it asks the database must not be overwritten by the older answer."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from kubetasks.identity import WorkerIdentity
from kubetasks.worker.health import HealthState
from kubetasks.worker.metrics import WorkerMetrics
from kubetasks.worker.settings import WorkerSettings
from kubetasks.worker.worker import Worker


class ReadyQueues:
    """A store whose ``ready_queues`` answers from a list of answers, running ``meanwhile``
    (on the event loop) while the first question is in flight, as a written retry or a NOTIFY
    does when it lands between the database's answer and the worker reading it."""

    def __init__(self, answers: list[list[str]]) -> None:
        self.answers = answers
        self.asked = 0
        self.meanwhile: Callable[[], None] = lambda: None
        self.loop: asyncio.AbstractEventLoop | None = None

    def ready_queues(self, *, excluded: Sequence[str]) -> list[str]:
        self.asked += 1
        if self.asked == 1:
            assert self.loop is not None
            asyncio.run_coroutine_threadsafe(self._call(self.meanwhile), self.loop).result()
        return self.answers[self.asked - 1]

    @staticmethod
    async def _call(change: Callable[[], None]) -> None:
        change()


async def worker_over(store: ReadyQueues) -> Worker:
    worker = Worker(WorkerSettings(database_url="db", imports=()), store=store,  # type: ignore[arg-type]
                    identity=WorkerIdentity("pod", "uid", "nonce"), metrics=WorkerMetrics(),
                    health=HealthState(liveness_timeout=60, last_loop_at=0.0))
    worker._loop = store.loop = asyncio.get_running_loop()
    return worker


def test_a_retry_written_while_the_queues_are_asked_makes_the_worker_ask_again() -> None:
    async def scenario() -> tuple[list[str] | None, list[str] | None, int]:
        # The database answers from before the retry was written (no READY task), then after.
        store = ReadyQueues([[], ["emails"]])
        worker = await worker_over(store)
        store.meanwhile = worker._retries_written
        first = await worker._queues()
        second = await worker._queues()
        return first, second, store.asked

    first, second, asked = asyncio.run(scenario())
    # Before the fix the empty answer was kept for a second, and the retry, due in one, waited
    # for the poll interval: the second call returned [] without asking.
    assert (first, second, asked) == ([], ["emails"], 2)


def test_a_notify_while_the_queues_are_asked_makes_the_worker_ask_again() -> None:
    async def scenario() -> tuple[list[str] | None, list[str] | None, int]:
        store = ReadyQueues([["reports"], ["emails", "reports"]])
        worker = await worker_over(store)
        worker._ready_queues = ["reports"]  # known, but past its second
        store.meanwhile = lambda: worker._notified("emails")
        await worker._queues()
        second = await worker._queues()
        third = await worker._queues()  # within the second of an undisturbed answer
        return second, third, store.asked

    second, third, asked = asyncio.run(scenario())
    assert (second, third, asked) == (["emails", "reports"], ["emails", "reports"], 2)
