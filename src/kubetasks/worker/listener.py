"""Waking the claim loop within milliseconds of an enqueue, through LISTEN/NOTIFY.

LISTEN belongs to a session, which a pooled connection cannot promise, so the listener keeps a
dedicated connection on its own thread. If that connection fails, the worker still polls (the
poll interval bounds the delay) while the listener reconnects.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kubetasks.store import DatabaseError, Store
from kubetasks.worker.policy import reconnect_delay

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)

STOP_CHECK_SECONDS = 1.0
"""How long one wait for notifications lasts before the thread looks whether to stop."""


class Listener:
    """Calls ``wake(queue_name)`` (from its own thread) when a queue the worker ``serves`` gets
    work, and ``wake(None)`` when it may have missed some (it was not listening)."""

    def __init__(self, store: Store, serves: Callable[[str], bool],
                 wake: Callable[[str | None], None]) -> None:
        self.store = store
        self.serves = serves
        self.wake = wake
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kubetasks-listen", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Ask the thread to stop; it closes its connection within ``STOP_CHECK_SECONDS``."""
        self._stopped.set()

    def _run(self) -> None:
        failures = 0
        while not self._stopped.is_set():
            try:
                with self.store.listen() as conn:
                    if failures:
                        log.info("listening for new tasks again")
                    failures = 0
                    # Work enqueued while nobody listened sent no notification we could see.
                    self.wake(None)
                    self._receive(conn)
            except DatabaseError as error:
                failures += 1
                delay = reconnect_delay(failures)
                log.warning("LISTEN connection failed, polling meanwhile; retry in %.1f s: %s",
                            delay, error)
                self._stopped.wait(delay)

    def _receive(self, conn: psycopg.Connection[Any]) -> None:
        while not self._stopped.is_set():
            for notify in conn.notifies(timeout=STOP_CHECK_SECONDS):
                if self.serves(notify.payload):
                    self.wake(notify.payload)
