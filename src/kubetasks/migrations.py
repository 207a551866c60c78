"""Schema migrations: numbered SQL files in ``sql/migrations``, each applied once, in order.

Two processes may migrate at the same time (two pods starting together): a transaction-level
advisory lock serialises them, and the second finds the work done.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

import psycopg

log = logging.getLogger(__name__)

LOCK_KEY = 0x6B756265_7461736B & 0x7FFFFFFFFFFFFFFF  # "kubetask", as a bigint
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


def applied(conn: psycopg.Connection[Any]) -> set[int]:
    exists = conn.execute("SELECT to_regclass('kubetasks_migrations') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return set()
    return {row[0] for row in conn.execute("SELECT version FROM kubetasks_migrations")}


def migrate(conninfo: str = "", *, connection: psycopg.Connection[Any] | None = None) -> list[int]:
    """Apply the migrations not yet applied; returns their versions."""
    conn = connection or psycopg.connect(conninfo)
    try:
        done: list[int] = []
        for migration in available():
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS kubetasks_migrations ("
                    " version integer PRIMARY KEY, name text NOT NULL,"
                    " applied_at timestamptz NOT NULL DEFAULT now())")
                if migration.version in applied(conn):
                    continue
                log.info("applying migration %04d_%s", migration.version, migration.name)
                conn.execute(migration.sql.encode())
                conn.execute("INSERT INTO kubetasks_migrations (version, name) VALUES (%s, %s)",
                             (migration.version, migration.name))
                done.append(migration.version)
        return done
    finally:
        if connection is None:
            conn.close()
