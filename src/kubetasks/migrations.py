"""Schema migrations: numbered SQL files in ``sql/migrations``, each applied once, in order.

Two processes may migrate at the same time (two pods starting together): the store applies
each under a transaction-level advisory lock, so the second finds the work done.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any

from kubetasks.store import apply_migrations

if TYPE_CHECKING:
    import psycopg

_FILE = re.compile(r"^(\d{4})_(\w+)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def available() -> list[Migration]:
    folder = resources.files("kubetasks").joinpath("sql/migrations")
    found = []
    for entry in folder.iterdir():
        match = _FILE.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise RuntimeError(f"migration numbers must run 1, 2, 3, ... without gaps; found {versions}")
    return found


def migrate(conninfo: str = "", *, connection: psycopg.Connection[Any] | None = None,
            upto: int | None = None) -> list[int]:
    """Apply the migrations not yet applied (those numbered up to ``upto``, if given: a Django
    migration applies the SQL migrations it knows of); returns their versions."""
    changes = [m for m in available() if upto is None or m.version <= upto]
    return apply_migrations(changes, conninfo=conninfo, connection=connection)
