"""Commands on a whole queue, kept in the database so every worker obeys them: ``pause``,
``resume``, ``limit``.

These are for queues without the operator; on a queue a TaskQueue serves, the operator writes
``spec.paused`` and ``spec.limits`` to the database whenever they change (or it restarts), so a
change made here lasts until then.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import click

from kubetasks.commands.database import open_store
from kubetasks.commands.options import (
    Count,
    Globals,
    KubetasksCommand,
    Refused,
    name_of,
    output_options,
)
from kubetasks.commands.output import Table, emit
from kubetasks.exceptions import InvalidTaskError
from kubetasks.parsing import format_duration, parse_duration
from kubetasks.records import QueueSettings
from kubetasks.request import check_queue_name

MAX_LIMIT = 1_000_000
NONE = "none"
"""The value that lifts a limit."""


class RateType(click.ParamType[tuple[int, timedelta] | None]):
    """``N/PERIOD`` (``10/1m``: ten starts a minute), or ``none``."""

    name = "rate"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> tuple[int, timedelta] | None:
        if value is None or isinstance(value, tuple):
            return value
        text = str(value).strip()
        if text == NONE:
            return None
        starts, slash, period = text.partition("/")
        try:
            count = Count(1, MAX_LIMIT).convert(starts, param, ctx) if slash else None
            duration = parse_duration(period) if slash else None
        except (ValueError, Refused):
            count = duration = None
        if count is None or duration is None or duration <= timedelta(0):
            raise Refused(f"{name_of(param)} {text!r} is invalid: use STARTS/PERIOD, e.g. 10/1m "
                          f"(at most 10 starts a minute), or {NONE}")
        return count, duration


class MaxRunning(click.ParamType[int | None]):
    """A cap from 1 up, or ``none``."""

    name = "integer"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> int | None:
        if value is None or isinstance(value, int):
            return value
        return None if str(value).strip() == NONE else Count(1, MAX_LIMIT).convert(value, param, ctx)


def queue_argument(text: str) -> str:
    try:
        return check_queue_name(text, None)
    except InvalidTaskError as error:
        raise Refused(str(error)) from None


def show(settings: QueueSettings, text: str | None) -> None:
    data = {"queue": settings.queue_name, "paused": settings.paused,
            "max_running": settings.max_running, "rate": settings.rate_text}
    rate = "-" if settings.rate_limit is None or settings.rate_period is None else (
        f"{settings.rate_limit}/{format_duration(settings.rate_period)}")
    emit(click.get_current_context().ensure_object(Globals).output_format, data,
         table=Table(["QUEUE", "PAUSED", "MAX RUNNING", "RATE"],
                     [[settings.queue_name, "yes" if settings.paused else "no",
                       str(settings.max_running or "-"), rate]]),
         text=text)


@click.command(cls=KubetasksCommand)
@output_options
@click.argument("queue")
def pause(queue: str) -> int:
    """Stop workers claiming from QUEUE; running tasks finish, enqueues still land."""
    with open_store() as store:
        settings = store.set_paused(queue_argument(queue), True)
    show(settings, f"paused {settings.queue_name}: workers claim nothing from it until "
                   "`kubetasks resume`")
    return 0


@click.command(cls=KubetasksCommand)
@output_options
@click.argument("queue")
def resume(queue: str) -> int:
    """Let workers claim from QUEUE again (they are woken at once)."""
    with open_store() as store:
        settings = store.set_paused(queue_argument(queue), False)
    show(settings, f"resumed {settings.queue_name}")
    return 0


@click.command(cls=KubetasksCommand)
@output_options
@click.argument("queue")
@click.option("--max-running", type=MaxRunning(), metavar="N|none",
              help="The most tasks of QUEUE RUNNING at once across every worker; none lifts it.")
@click.option("--rate", type=RateType(), metavar="N/PERIOD|none",
              help="The most task starts per period, e.g. 10/1m (a burst of 10, then one every "
                   "6 s); none lifts it.")
def limit(queue: str, max_running: int | None, rate: tuple[int, timedelta] | None) -> int:
    """Show QUEUE's limits, or set them: those not given are kept."""
    source = click.get_current_context()
    given = {name for name in ("max_running", "rate")
             if source.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE}
    name = queue_argument(queue)
    with open_store() as store:
        [current] = store.queue_settings([name])
        if not given:
            show(current, None)
            return 0
        kept_rate = (current.rate_limit, current.rate_period)
        starts, period = (rate or (None, None)) if "rate" in given else kept_rate
        settings = store.set_limits(QueueSettings(
            name, max_running=max_running if "max_running" in given else current.max_running,
            rate_limit=starts, rate_period=period))
    show(settings, f"limits of {name} set")
    return 0
