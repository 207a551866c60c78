"""The ``kubetasks`` command: the subcommands of ``kubetasks.commands.COMMANDS`` under one
group, with the global flags and one-line errors.

Built on click (Pallets' command-line library, under Flask's and typer's CLIs): subcommands,
options shared by many commands, typed values with one-line refusals, ``--help`` from the
docstrings, terminal detection for colour, and a progress bar, all kept by a library the field
maintains instead of argparse glue of our own. The commands are in ``kubetasks.commands``
(its docstring says how to add one); this module puts them together and turns every error into
one line on stderr.

Exit codes: 0 done; 1 the command failed or found nothing to change (the line says why);
2 a bad argument; 130 interrupted.
"""

from __future__ import annotations

import importlib.metadata
import logging
import sys
from collections.abc import Sequence

import click

from kubetasks.commands import COMMANDS
from kubetasks.commands.options import Globals, output_options
from kubetasks.exceptions import KubeTasksError
from kubetasks.logs import redact
from kubetasks.store import DatabaseError

log = logging.getLogger(__name__)

UNDEFINED_TABLE = "42P01"


def installed_version() -> str:
    """The installed distribution's version, as ``pip show kubetasks`` says it."""
    try:
        return importlib.metadata.version("kubetasks")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed as a distribution)"


def _print_version(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(f"kubetasks {installed_version()}")
        ctx.exit(0)


class Kubetasks(click.Group):
    """Lists the commands in ``COMMANDS`` order (click would sort them)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)


@click.group(cls=Kubetasks, context_settings={"help_option_names": ["-h", "--help"],
                                              "max_content_width": 100})
@click.option("--version", is_flag=True, expose_value=False, is_eager=True,
              callback=_print_version, help="Print the installed version and exit.")
@output_options
def cli() -> None:
    """A Kubernetes-native task queue on PostgreSQL.

    Global flags (--database-url, --log-level, -o) go before or after the command.
    """


for command in COMMANDS:
    cli.add_command(command)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; its exit code. Every error is one line on stderr naming the value, and
    exit code 1 (``SystemExit(2)`` for a bad argument, as argparse did); no secret is shown."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        for argument in argv:
            if "\0" in argument:
                raise click.UsageError(f"argument {argument!r} contains a NUL character")
        with cli.make_context("kubetasks", argv, obj=Globals()) as ctx:
            return int(cli.invoke(ctx) or 0)
    except click.exceptions.Exit as stop:  # --help, --version
        raise SystemExit(stop.exit_code) from None
    except click.UsageError as error:
        raise SystemExit(_refuse(error)) from None
    except (KeyboardInterrupt, click.Abort):
        click.echo("kubetasks: interrupted", err=True)
        return 130
    except Exception as error:  # one line, never a traceback
        log.debug("command failed", exc_info=True)
        click.echo(f"kubetasks: {one_line(describe(error))}", err=True)
        return 1


def _refuse(error: click.UsageError) -> int:
    path = error.ctx.command_path if error.ctx else "kubetasks"
    if isinstance(error, click.exceptions.NoArgsIsHelpError) and error.ctx:
        click.echo(error.ctx.get_help())
        return 0
    click.echo(f"kubetasks: {one_line(error.format_message())} (see {path} --help)", err=True)
    return 2


def describe(error: Exception) -> str:
    if isinstance(error, KubeTasksError):
        return str(error)
    if isinstance(error, DatabaseError):
        if getattr(error, "sqlstate", None) == UNDEFINED_TABLE:
            return f"the database has no kubetasks schema ({error}): run `kubetasks migrate`"
        return f"database error ({type(error).__name__}): {error}"
    return f"{type(error).__name__}: {error}"


def one_line(text: str) -> str:
    return redact("; ".join(line.strip() for line in text.strip().splitlines() if line.strip()))


if __name__ == "__main__":
    sys.exit(main())
