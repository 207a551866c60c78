"""What every ``kubetasks`` command shares: the global flags, accepted before or after the
subcommand as kubectl accepts them, and the value types that refuse bad input in one line
naming the option and the value."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import click

from kubetasks.logs import setup_logging
from kubetasks.parsing import format_duration, parse_duration

F = TypeVar("F", bound=Callable[..., Any])

CONNECT_TIMEOUT = "5"
"""Seconds a command waits for the database to answer (libpq's ``PGCONNECT_TIMEOUT``, unless
set): an unreachable host fails in seconds with its reason, not after the pool's timeout."""

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
OUTPUT_FORMATS = ("table", "json", "yaml")
MAX_DURATION = timedelta(days=36500)


@dataclass
class Globals:
    """The global flags, wherever on the command line they were given (the last one wins)."""

    database_url: str | None = None
    log_level: str | None = None
    output: str | None = None

    @property
    def output_format(self) -> str:
        return self.output or "table"


def output_format() -> str:
    """``-o`` of the command being run (``table`` unless given)."""
    return click.get_current_context().ensure_object(Globals).output_format


class Refused(click.BadParameter):
    """A bad value, with a message that already names the option and the value."""

    def format_message(self) -> str:
        return self.message


def _remember(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    if value is not None and param.name:
        setattr(ctx.ensure_object(Globals), param.name, value)


def _log_level(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is not None and value.lower() not in LOG_LEVELS:
        raise Refused(f"log level {value!r} is invalid: use one of {', '.join(LOG_LEVELS)}")
    _remember(ctx, param, value)


DATABASE_URL = click.option(
    "--database-url", expose_value=False, callback=_remember, metavar="URL",
    help="PostgreSQL URL (default: KUBETASKS_DATABASE_URL, then libpq's PG* variables).")
LOG_LEVEL = click.option(
    "--log-level", expose_value=False, callback=_log_level, metavar="LEVEL",
    help=f"One of {', '.join(LOG_LEVELS)} (default: KUBETASKS_LOG_LEVEL, then info).")
OUTPUT = click.option(
    "-o", "--output", expose_value=False, callback=_remember,
    type=click.Choice(OUTPUT_FORMATS), help="Output format (default: table).")


def global_options(command: F) -> F:
    """``--database-url`` and ``--log-level``: on the group and on every subcommand."""
    return DATABASE_URL(LOG_LEVEL(command))


def output_options(command: F) -> F:
    """The global flags and ``-o``: on the group and every command that prints data."""
    return global_options(OUTPUT(command))


class KubetasksCommand(click.Command):
    """A subcommand: once all flags are read (the group's and its own), logging is set up and
    libpq is told not to wait long for an unreachable database."""

    def invoke(self, ctx: click.Context) -> Any:
        settings = ctx.ensure_object(Globals)
        level = settings.log_level or os.environ.get("KUBETASKS_LOG_LEVEL") or "info"
        if level.lower() not in LOG_LEVELS:
            raise Refused(f"KUBETASKS_LOG_LEVEL={level!r} is invalid: use one of "
                          f"{', '.join(LOG_LEVELS)}")
        setup_logging(level.upper())
        os.environ.setdefault("PGCONNECT_TIMEOUT", CONNECT_TIMEOUT)
        return super().invoke(ctx)


def name_of(param: click.Parameter | None) -> str:
    if param is None:
        return "value"
    return param.opts[0] if isinstance(param, click.Option) else param.human_readable_name


class Duration(click.ParamType[timedelta]):
    """A duration as ``parse_duration`` reads it (``90s``, ``15m``, ``1h30m``, ``2d12h``),
    within bounds: below ``low`` a value would do harm (``why`` says what harm)."""

    name = "duration"

    def __init__(self, low: timedelta, high: timedelta = MAX_DURATION, why: str = "") -> None:
        self.low, self.high, self.why = low, high, why

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> timedelta:
        if isinstance(value, timedelta):
            return value
        option = name_of(param)
        try:
            duration = parse_duration(str(value))
        except ValueError as error:
            raise Refused(f"{option}: {error}") from None
        if not math.isfinite(duration.total_seconds()) or not self.low <= duration <= self.high:
            raise Refused(f"{option} {value!r} is out of range: use from "
                          f"{format_duration(self.low)} to {format_duration(self.high)}{self.why}")
        return duration


class Count(click.ParamType[int]):
    """A whole number from ``low`` to ``high``."""

    name = "integer"

    def __init__(self, low: int, high: int) -> None:
        self.low, self.high = low, high

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        text = str(value)
        number = int(text) if text.strip().lstrip("-").isdigit() and len(text) < 12 else None
        if number is None or not self.low <= number <= self.high:
            raise Refused(f"{name_of(param)} {text!r} is invalid: use a whole number from "
                          f"{self.low} to {self.high}")
        return number


class TaskId(click.ParamType[int]):
    """A task's id as ``kubetasks enqueue`` printed it."""

    name = "id"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        text = str(value)
        if not text.isdigit() or len(text) > 19 or int(text) < 1:
            raise Refused(f"task id {text!r} is invalid: use the number `kubetasks enqueue` or "
                          "`kubetasks tasks` shows, e.g. 42")
        return int(text)


DRY_RUN = click.option("--dry-run", is_flag=True,
                       help="Say what would change, and change nothing.")
