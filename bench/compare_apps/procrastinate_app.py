"""Procrastinate's app for ``procrastinate --app bench.compare_apps.procrastinate_app.app``."""

from __future__ import annotations

import os

import procrastinate

from bench.compare_apps.signal import started

app = procrastinate.App(connector=procrastinate.PsycopgConnector(
    conninfo=os.environ.get("KT_BENCH_DSN", "")))


@app.task(name="noop")
async def noop() -> None:
    """Nothing: what is measured is the queue."""


@app.task(name="pickup")
async def pickup() -> None:
    started()
