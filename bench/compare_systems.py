"""One queue's side of ``bench.compare``, run in a process of its own so that no queue's imports
or connections weigh on another's numbers:

    python -m bench.compare_systems SYSTEM ACTION --dsn URL [--n N] [--udp-port PORT]

ACTION is ``setup`` (install the schema), ``bulk`` (enqueue N no-op tasks with the queue's bulk
call, timed), ``single`` (N enqueue calls one at a time, timed) or ``pickup`` (N pickup tasks,
one at a time with a random pause, each timed from just before its enqueue call to the task's
start, as the task reports it on UDP). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

SYSTEMS = ("kubetasks", "pgqueuer", "procrastinate", "django")


def timed(n: int, run: Callable[[], object]) -> dict[str, float]:
    """Calls per second, and the process's CPU (every thread's) per call in microseconds."""
    started = time.perf_counter(), time.process_time()
    run()
    return rates(n, started)


async def atimed(n: int, run: Callable[[], Awaitable[object]]) -> dict[str, float]:
    """``timed`` for a coroutine."""
    started = time.perf_counter(), time.process_time()
    await run()
    return rates(n, started)


def rates(n: int, started: tuple[float, float]) -> dict[str, float]:
    wall, cpu = started
    return {"per_second": n / (time.perf_counter() - wall),
            "cpu_us": (time.process_time() - cpu) / n * 1e6}


def pickup_delays(n: int, port: int, enqueue: Callable[[], object]) -> dict[str, list[float]]:
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", port))
    receiver.settimeout(10)
    delays = []
    for _ in range(n):
        before = time.time()
        enqueue()
        started = float(receiver.recv(64))
        delays.append((started - before) * 1000)
        time.sleep(random.uniform(0.005, 0.03))
    return {"delays_ms": delays}


# -- kubetasks ------------------------------------------------------------------------------

def kubetasks(action: str, dsn: str, n: int, port: int) -> dict[str, Any]:
    from bench.compare_apps import kubetasks_tasks as tasks
    from kubetasks.backends import PostgresBackend
    from kubetasks.store import Store

    if action == "setup":
        from kubetasks.migrations import migrate
        migrate(dsn)
        return {}
    backend = PostgresBackend(Store(dsn))
    noop = getattr(tasks, os.environ.get("KT_BENCH_TASK", "noop")).using(backend=backend)
    noop.enqueue()  # opens the pool: connecting is not enqueueing
    if action == "bulk":
        return timed(n, lambda: noop.enqueue_many([() for _ in range(n)]))
    if action == "single":
        return timed(n, lambda: [noop.enqueue() for _ in range(n)])
    return pickup_delays(n, port, tasks.pickup.using(backend=backend).enqueue)


# -- PgQueuer -------------------------------------------------------------------------------

def pgqueuer(action: str, dsn: str, n: int, port: int) -> dict[str, Any]:
    if action == "setup":
        subprocess.run([os.path.join(os.path.dirname(sys.executable), "pgq"), "install"],
                       env={**os.environ, "PGDSN": dsn}, check=True, capture_output=True)
        return {}
    return asyncio.run(_pgqueuer(action, dsn, n, port))


async def _pgqueuer(action: str, dsn: str, n: int, port: int) -> dict[str, Any]:
    import asyncpg
    from pgqueuer.db import AsyncpgDriver
    from pgqueuer.queries import Queries

    queries = Queries(AsyncpgDriver(await asyncpg.connect(dsn)))
    if action == "bulk":
        return await atimed(n, lambda: queries.enqueue(["noop"] * n, [None] * n, [0] * n))
    if action == "single":
        async def one_at_a_time() -> None:
            for _ in range(n):
                await queries.enqueue("noop", None)
        return await atimed(n, one_at_a_time)
    loop = asyncio.get_running_loop()
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", port))
    receiver.setblocking(False)
    delays = []
    for _ in range(n):
        before = time.time()
        await queries.enqueue("pickup", None)
        started_at = float(await asyncio.wait_for(loop.sock_recv(receiver, 64), 10))
        delays.append((started_at - before) * 1000)
        await asyncio.sleep(random.uniform(0.005, 0.03))
    return {"delays_ms": delays}


# -- Procrastinate --------------------------------------------------------------------------

def procrastinate(action: str, dsn: str, n: int, port: int) -> dict[str, Any]:
    os.environ["KT_BENCH_DSN"] = dsn
    from bench.compare_apps.procrastinate_app import app, noop, pickup

    with app.open():
        if action == "setup":
            app.schema_manager.apply_schema()
            return {}
        if action == "bulk":
            return timed(n, lambda: noop.batch_defer(*({} for _ in range(n))))
        if action == "single":
            return timed(n, lambda: [noop.defer() for _ in range(n)])
        return pickup_delays(n, port, pickup.defer)


# -- django-tasks-db ------------------------------------------------------------------------

def django(action: str, dsn: str, n: int, port: int) -> dict[str, Any]:
    os.environ["KT_BENCH_DSN"] = dsn
    os.environ["DJANGO_SETTINGS_MODULE"] = "bench.compare_apps.django_settings"
    import django as django_module
    django_module.setup()
    from django.core.management import call_command

    from bench.compare_apps import django_app_tasks as tasks

    if action == "setup":
        call_command("migrate", verbosity=0)
        return {}
    if action == "bulk":
        # django.tasks has no bulk enqueue: the rows its enqueue writes, in one bulk_create
        # (a fill for the drain, not a number to compare).
        from django.utils import timezone
        from django_tasks_db.backend import DatabaseBackend
        from django_tasks_db.models import DBTaskResult
        backend = DatabaseBackend("default", {})
        rows = [DBTaskResult(id=backend._get_id(), args_kwargs={"args": [], "kwargs": {}},
                             priority=0, task_path=tasks.noop.module_path,
                             queue_name="default", run_after=timezone.now(),
                             backend_name="default") for _ in range(n)]
        DBTaskResult.objects.bulk_create(rows, batch_size=5000)
        return {"per_second": None}
    if action == "single":
        return timed(n, lambda: [tasks.noop.enqueue() for _ in range(n)])
    return pickup_delays(n, port, tasks.pickup.enqueue)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("system", choices=SYSTEMS)
    parser.add_argument("action", choices=("setup", "bulk", "single", "pickup"))
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--n", type=int, default=0)
    parser.add_argument("--udp-port", type=int, default=0)
    options = parser.parse_args()
    run = globals()[options.system]
    print(json.dumps(run(options.action, options.dsn, options.n, options.udp_port)))


if __name__ == "__main__":
    main()
