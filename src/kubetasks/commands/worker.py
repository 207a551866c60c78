"""``kubetasks worker``: its flags are ``WORKER_OPTIONS`` (``kubetasks.worker.settings``), the one
place a worker flag is defined."""

from __future__ import annotations

from typing import Any

import click

from kubetasks.commands.database import database_url
from kubetasks.commands.options import KubetasksCommand, global_options
from kubetasks.worker.settings import worker_options


@click.command(cls=KubetasksCommand)
@global_options
@worker_options
def worker(**options: Any) -> int:
    """Claim and run tasks of the imported modules until SIGTERM."""
    from kubetasks.worker.command import run

    return run(options, database_url=database_url())
