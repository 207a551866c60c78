"""Settings read once from the environment, and the process-wide default backend."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from kubetasks.backends import Backend, DummyBackend, ImmediateBackend, PostgresBackend
from kubetasks.exceptions import ConfigurationError
from kubetasks.parsing import parse_names
from kubetasks.result import TaskResult
from kubetasks.store import Store

log = logging.getLogger("kubetasks")

BACKENDS = ("postgres", "immediate", "dummy")
_LIBPQ_HINTS = ("PGHOST", "PGDATABASE", "PGSERVICE")


@dataclass(frozen=True, slots=True)
class Settings:
    """``KUBETASKS_BACKEND``, ``KUBETASKS_DATABASE_URL`` (libpq's ``PG*`` variables also
    apply) and ``KUBETASKS_QUEUES`` (a comma-separated allow-list of queue names)."""

    backend: str
    database_url: str = ""
    queues: frozenset[str] | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        url = env.get("KUBETASKS_DATABASE_URL", "")
        has_database = bool(url) or any(env.get(name) for name in _LIBPQ_HINTS)
        backend = env.get("KUBETASKS_BACKEND") or ("postgres" if has_database else "immediate")
        if backend not in BACKENDS:
            raise ConfigurationError(
                f"KUBETASKS_BACKEND={backend!r} is not a backend; use one of {', '.join(BACKENDS)}")
        queues = env.get("KUBETASKS_QUEUES")
        return cls(
            backend=backend, database_url=url,
            queues=frozenset(parse_names(queues)) if queues else None,
        )


def make_backend(settings: Settings) -> Backend:
    if settings.backend == "postgres":
        return PostgresBackend(Store(settings.database_url), allowed_queues=settings.queues)
    if settings.backend == "dummy":
        return DummyBackend(allowed_queues=settings.queues)
    log.warning("kubetasks: no database configured (KUBETASKS_DATABASE_URL or PG* unset); "
                "tasks run inline with the immediate backend")
    return ImmediateBackend(allowed_queues=settings.queues)


_lock = threading.Lock()
_backend: Backend | None = None


def configure(backend: str | Backend | None = None, *, database_url: str | None = None,
              queues: Iterable[str] | None = None) -> Backend:
    """Set the process-wide backend and return it.

    ``configure("dummy")``, ``configure(database_url="postgresql://...")``, or a Backend
    instance. Unset arguments fall back to the environment.
    """
    global _backend
    if isinstance(backend, Backend):
        chosen = backend
    else:
        base = Settings.from_env()
        settings = Settings(
            backend=backend or ("postgres" if database_url else base.backend),
            database_url=database_url if database_url is not None else base.database_url,
            queues=frozenset(queues) if queues is not None else base.queues,
        )
        if settings.backend not in BACKENDS:
            raise ConfigurationError(f"backend {settings.backend!r} is not one of {', '.join(BACKENDS)}")
        chosen = make_backend(settings)
    with _lock:
        previous, _backend = _backend, chosen
    if previous is not None and previous is not chosen:
        previous.close()
    return chosen


def get_backend() -> Backend:
    """The process-wide backend, made from the environment on first use."""
    global _backend
    with _lock:
        if _backend is None:
            _backend = make_backend(Settings.from_env())
        return _backend


def get_result(result_id: str | int) -> TaskResult[Any]:
    """The result of a task by id, from the default backend."""
    return get_backend().get_result(str(result_id))


async def aget_result(result_id: str | int) -> TaskResult[Any]:
    import asyncio

    return await asyncio.to_thread(get_result, result_id)
