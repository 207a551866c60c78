"""``kubetasks worker``: the entry point the CLI calls.

    kubetasks worker --import app.tasks [--queue emails ...] [--concurrency 8]

Reads the configuration once, imports the task modules, serves the probes, and runs the worker
until SIGTERM or SIGINT. Exits 0 after a clean stop.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import signal
from collections.abc import Mapping
from typing import Any

from kubetasks.config import configure
from kubetasks.exceptions import ConfigurationError
from kubetasks.identity import WorkerIdentity
from kubetasks.store import Store
from kubetasks.task import registry
from kubetasks.worker.health import HealthServer, HealthState
from kubetasks.worker.metrics import WorkerMetrics
from kubetasks.worker.settings import WorkerSettings
from kubetasks.worker.worker import Worker

__all__ = ["import_task_modules", "run", "serve"]

log = logging.getLogger(__name__)


def run(options: Mapping[str, Any], *, database_url: str) -> int:
    """Run a worker with the flags of ``WORKER_OPTIONS`` (by parameter name)."""
    settings = WorkerSettings.from_options(options, os.environ, database_url=database_url)
    import_task_modules(settings.imports)
    serve(settings, identity=WorkerIdentity.from_env())
    return 0


def serve(settings: WorkerSettings, *, identity: WorkerIdentity) -> None:
    """Run a worker with its probes until it is stopped by SIGTERM or SIGINT."""
    # Tasks that enqueue other tasks write to the worker's database, on a pool of their own so
    # that they can never starve the worker's claims and result writes of connections.
    # (KUBETASKS_QUEUES still limits the queues they may enqueue into.)
    backend = configure("postgres", database_url=settings.database_url)
    # Four connections cover the claim loop, the result writer, heartbeats and the put-back on
    # shutdown. A short wait for one turns a database outage into "not ready" soon.
    store = Store(settings.database_url, min_size=2, max_size=4, timeout=10)
    metrics = WorkerMetrics(slots=settings.concurrency, queues=settings.queues)
    health = HealthState(liveness_timeout=settings.liveness_timeout)
    worker = Worker(settings, store=store, identity=identity, metrics=metrics, health=health)
    try:
        with _probe_server(settings, health, metrics) as server:
            log.info("health and metrics on http://%s:%d (/healthz /readyz /metrics)",
                     settings.health_host, server.port, extra={"health_port": server.port})
            asyncio.run(_until_stopped(worker))
    finally:
        store.close()
        backend.close()


def _probe_server(settings: WorkerSettings, health: HealthState,
                  metrics: WorkerMetrics) -> HealthServer:
    host, port = settings.health_host, settings.health_port
    try:
        return HealthServer(host, port, health, metrics.registry)
    except OSError as error:
        raise ConfigurationError(
            f"cannot serve /healthz, /readyz and /metrics on {host}:{port}: "
            f"{error.strerror or error} (another worker on this host?); choose another port "
            "with --health-port PORT or KUBETASKS_HEALTH_PORT, or 0 to pick a free one"
        ) from None


async def _until_stopped(worker: Worker) -> None:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, worker.stop)
    await worker.run()


def import_task_modules(modules: tuple[str, ...]) -> dict[str, str]:
    """Import the modules that define tasks; returns the registered task names and their
    queues. Only these tasks will run: nothing named by the database is ever imported."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as error:
            raise ConfigurationError(
                f"--import {module!r} failed: {error}; give an importable module path such as "
                "app.tasks (is the application on PYTHONPATH or in the working directory?)"
            ) from error
    if not registry:
        raise ConfigurationError(
            f"the modules {', '.join(modules)} define no tasks: decorate functions with "
            "@kubetasks.task in them")
    return {name: task.queue_name for name, task in registry.items()}
