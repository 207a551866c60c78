"""One statistics statement per poll for every TaskQueue of one database.

Each queue's daemon steps at its own time. Reading its queue alone would cost an operator with a
hundred TaskQueues a hundred statements every poll interval; instead the first daemon whose
reading is older than it accepts reads every queue asked for lately, in one statement
(``Store.queues_statistics``), and the others take their part of that reading. A daemon woken by
a NOTIFY asks for a reading of age 0 and reads its queue alone, so a queue that just got work is
seen at once; so does a step about to remove pods (``QueueController.step``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from kubetasks.records import QueueStatistics, StatisticsRequest
from kubetasks.store import Store

FORGET_AFTER_SECONDS = 60.0
"""A queue not asked for this long (its TaskQueue deleted, or moved to another database) is no
longer read."""


class StatisticsPoller:
    """Hands out queue statistics no older than each caller accepts, reading them together."""

    def __init__(self, store: Store, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.clock = clock
        self._lock = threading.Lock()
        self._asked: dict[StatisticsRequest, float] = {}
        self._read: dict[StatisticsRequest, tuple[float, QueueStatistics]] = {}

    def queue_statistics(self, wanted: StatisticsRequest, *, max_age: float) -> QueueStatistics:
        """``wanted``'s statistics, read at most ``max_age`` seconds ago. Called from the
        daemons' threads; one reads while the others wait for its reading."""
        with self._lock:
            now = self.clock()
            self._asked[wanted] = now
            held = self._read.get(wanted)
            if held is not None and now - held[0] < max_age:
                return held[1]
            if max_age <= 0:  # woken for this queue: read it alone, at once
                batch = [wanted]
            else:
                self._asked = {r: t for r, t in self._asked.items()
                               if now - t <= FORGET_AFTER_SECONDS}
                batch = list(self._asked)
            read = self.store.queues_statistics(batch)
            if max_age > 0:
                self._read = {}
            self._read.update((request, (now, seen)) for request, seen in read.items())
            return read[wanted]
