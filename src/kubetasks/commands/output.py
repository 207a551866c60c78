"""How commands print: a table for people (human times, colour on a terminal), or JSON/YAML
for programs (ISO times, the same keys on every run); and a progress bar on a terminal only.

Each command builds its data once, as plain values, and ``emit`` renders it in the chosen
format, so the table and the machine-readable shapes never drift apart.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import click
import yaml

from kubetasks.parsing import format_duration

STATE_COLOURS = {"READY": "cyan", "RUNNING": "yellow", "SUCCESSFUL": "green", "FAILED": "red",
                 "CANCELLED": "bright_black"}


def use_colour(stream: Any = None) -> bool:
    """Colour only on a terminal, and never with ``NO_COLOR`` set (https://no-color.org)."""
    stream = stream or sys.stdout
    return bool(stream.isatty()) and not os.environ.get("NO_COLOR")


@dataclass(frozen=True)
class Table:
    """Columns as kubectl prints them: upper-case headers, left-aligned, three spaces apart."""

    headers: Sequence[str]
    rows: Sequence[Sequence[str]]
    colour_column: int | None = None
    """The column whose cells are states, coloured on a terminal."""

    def lines(self, *, colour: bool) -> list[str]:
        widths = [max([len(h), *(len(printable(row[i])) for row in self.rows)])
                  for i, h in enumerate(self.headers)]
        out = []
        for number, row in enumerate([list(self.headers), *map(list, self.rows)]):
            cells = [cell.ljust(width) for cell, width in zip(map(printable, row), widths,
                                                             strict=True)]
            if colour and number and self.colour_column is not None:
                i = self.colour_column
                cells[i] = click.style(cells[i], fg=STATE_COLOURS.get(row[i].strip()))
            out.append("   ".join(cells).rstrip())
        return out


def emit(output: str, data: Any, *, table: Table | None = None, text: str | None = None) -> None:
    """Print ``data`` as JSON or YAML, or, for ``table``, the table and/or the text line."""
    if output == "json":
        click.echo(json.dumps(data, indent=2, default=_iso))
    elif output == "yaml":
        click.echo(yaml.safe_dump(_plain(data), sort_keys=False, allow_unicode=True), nl=False)
    else:
        colour = use_colour()
        if table is not None and (table.rows or text is None):
            for line in table.lines(colour=colour):
                click.echo(line, color=colour)
        if text is not None:
            click.echo("\n".join(map(printable, text.split("\n"))), color=colour)


def printable(text: str) -> str:
    """``text`` with control characters written as escapes: a task name, an argument or an
    error message written by anyone can never move the cursor or retitle the terminal."""
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)


def _iso(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _plain(value: Any) -> Any:
    """Datetimes as the same ISO text JSON shows (YAML would write its own timestamp form)."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def ago(moment: datetime | None, now: datetime | None = None) -> str:
    """``3m ago``, ``in 2h``, ``just now``, ``-`` for none: how long ago, to the largest two
    units."""
    if moment is None:
        return "-"
    delta = (now or datetime.now(UTC)) - moment
    if abs(delta.total_seconds()) < 1:
        return "just now"
    span = _two_units(format_duration(abs(delta)))
    return f"{span} ago" if delta.total_seconds() > 0 else f"in {span}"


def _two_units(text: str) -> str:
    parts, number = [], ""
    for char in text:
        number += char
        if char.isalpha():
            parts.append(number)
            number = ""
    return "".join(parts[:2])


class Progress(Protocol):
    def update(self, n_steps: int) -> None: ...


class _Silent:
    def update(self, n_steps: int) -> None:
        pass


@contextlib.contextmanager
def progress(total: int, label: str) -> Iterator[Progress]:
    """A progress bar on stderr when it is a terminal; nothing otherwise, so piped output
    stays plain."""
    if not sys.stderr.isatty() or total <= 0:
        yield _Silent()
        return
    with click.progressbar(length=total, label=label, file=sys.stderr,
                           color=use_colour(sys.stderr)) as bar:
        yield bar
