"""PgQueuer's factory for ``pgq run bench.compare_apps.pgqueuer_app:create``."""

from __future__ import annotations

import os

import asyncpg
from pgqueuer import PgQueuer
from pgqueuer.db import AsyncpgDriver
from pgqueuer.models import Job

from bench.compare_apps.signal import started


async def create() -> PgQueuer:
    connection = await asyncpg.connect(os.environ["PGDSN"])
    pgq = PgQueuer(AsyncpgDriver(connection))

    @pgq.entrypoint("noop")
    async def noop(job: Job) -> None:
        """Nothing: what is measured is the queue."""

    @pgq.entrypoint("pickup")
    async def pickup(job: Job) -> None:
        started()

    return pgq


def main() -> None:
    """``pgq run`` with ``--batch-size``: PgQueuer 1.6's own CLI fails on start under the
    typer this environment holds (its log set-up), so the benchmark starts the same
    ``PgQueuer.run`` itself."""
    import argparse
    import asyncio
    import logging

    parser = argparse.ArgumentParser()
    parser.add_argument("--batch-size", type=int, default=10)
    options = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    async def run() -> None:
        pgq = await create()
        await pgq.run(batch_size=options.batch_size)

    asyncio.run(run())


if __name__ == "__main__":
    main()
