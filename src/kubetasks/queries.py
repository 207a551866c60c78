"""The named SQL statements of ``sql/queries.sql``, loaded once."""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

_NAME = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


def parse_queries(text: str) -> dict[str, str]:
    """Split a file of ``-- name: x`` blocks into ``{name: statement}``."""
    parts = _NAME.split(text)
    queries: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in queries:
            raise ValueError(f"query {name!r} is defined twice")
        statement = "\n".join(
            line for line in body.strip().splitlines() if not line.lstrip().startswith("--")
        ).rstrip().rstrip(";")
        queries[name] = statement
    return queries


@cache
def queries() -> dict[str, str]:
    text = resources.files("kubetasks").joinpath("sql/queries.sql").read_text(encoding="utf-8")
    return parse_queries(text)


def query(name: str) -> str:
    """The SQL of the named statement."""
    return queries()[name]
