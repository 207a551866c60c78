"""The subcommands of ``kubetasks``, one click command each; ``kubetasks.cli`` puts them together.

To add a command, e.g. ``kubetasks pause QUEUE``:

1. write it in the module of its concept (``tasks.py``: single tasks and the backlog;
   ``maintenance.py``: changes to many tasks; a new module such as ``queues.py`` or
   ``schedules.py`` for a new concept, or a ``click.Group`` there for ``schedules list|add``)::

       @click.command(cls=KubetasksCommand)
       @output_options                     # --database-url, --log-level, -o after the name too
       @click.argument("queue")
       @DRY_RUN                            # if it changes anything
       def pause(queue: str, dry_run: bool) -> int:
           \"\"\"First line of the docstring is the command's --help summary.\"\"\"
           with open_store() as store:     # reachable or refused with libpq's reason
               ...                         # one Store method per named query in queries.sql
           emit(output_format(), {"paused": 1, "queue": queue}, text=f"paused {queue}")
           return 0                        # the exit code

2. add it to ``COMMANDS`` below (the order of ``kubetasks --help``);
3. document it in ``docs/cli.md`` and test it in ``tests/integration/test_cli*.py``.

An option that several commands take is defined once in ``options.py`` (like ``DRY_RUN``), with
a ``click.ParamType`` there when its value needs checking (``Duration``, ``Count``, ``TaskId``):
a bad value raises ``Refused`` with one line naming the option and the value. The worker's
options live in ``kubetasks.worker.settings.WORKER_OPTIONS``. Print with ``output.emit`` only,
given ``options.output_format()``: it keeps the table, JSON and YAML shapes of a command in one
place, and escapes control characters on the terminal. Raise ``KubeTasksError``
subclasses for what the user must fix; ``kubetasks.cli.main`` turns them into one line and
exit code 1.
"""

from __future__ import annotations

import click

from kubetasks.commands.maintenance import migrate, prune, requeue
from kubetasks.commands.queues import limit, pause, resume
from kubetasks.commands.schedules import schedules
from kubetasks.commands.tasks import cancel, enqueue, retry, show, status, tasks
from kubetasks.commands.worker import worker

COMMANDS: tuple[click.Command, ...] = (
    migrate, worker, enqueue, status, tasks, show, cancel, retry, requeue, prune,
    pause, resume, limit, schedules,
)
"""Every subcommand, in the order ``kubetasks --help`` lists them."""
