"""One LISTEN connection per database: a NOTIFY for a queue wakes that queue's scaler at once,
so a queue scales from zero within a second of its first enqueue instead of a poll later."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict

from kubetasks.store import DatabaseError, Store

log = logging.getLogger(__name__)


class Notifier:
    """Wakes subscribers (asyncio Events) when their queue gets work."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.subscribers: dict[str, set[asyncio.Event]] = defaultdict(set)
        self._task: asyncio.Task[None] | None = None

    def subscribe(self, queue_name: str, wake: asyncio.Event) -> None:
        self.subscribers[queue_name].add(wake)
        if self._task is None:
            self._task = asyncio.create_task(self._listen_forever(), name=f"listen {queue_name}")

    def unsubscribe(self, queue_name: str, wake: asyncio.Event) -> None:
        self.subscribers[queue_name].discard(wake)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _listen_forever(self) -> None:
        delay = 0.5
        while True:
            try:
                async with await self.store.listen_async() as conn:
                    delay = 0.5
                    # Wake everyone once: work may have arrived while we were not listening.
                    self._wake_all()
                    async for note in conn.notifies():
                        for wake in self.subscribers.get(note.payload, ()):
                            wake.set()
            except DatabaseError as error:
                log.warning("LISTEN connection lost; retrying", extra={"error": str(error),
                                                                       "retry_in": delay})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    def _wake_all(self) -> None:
        for events in self.subscribers.values():
            for wake in events:
                wake.set()
