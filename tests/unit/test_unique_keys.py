"""Unique keys without a database: what an enqueue accepts, the in-memory backends' keys, and the
SQL's one predicate of a live key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kubetasks import InvalidTaskError, TaskResultStatus, task
from kubetasks.backends import DummyBackend, ImmediateBackend
from kubetasks.exceptions import DuplicateTaskError
from kubetasks.queries import query
from kubetasks.request import check_unique

MIGRATION = (Path(__file__).resolve().parents[2] / "src" / "kubetasks" / "sql" / "migrations"
             / "0004_unique_pause_limits.sql")

ran: list[int] = []


@task(queue_name="unique-unit")
def note(n: int) -> int:
    ran.append(n)
    return n


def live_predicate(sql: str, after: str) -> str:
    """The WHERE predicate that follows ``after``, without spaces and table aliases."""
    start = sql.index(after) + len(after)
    text = sql[start:]
    end = min([i for i in (text.find(" DO NOTHING"), text.find(";")) if i >= 0] + [len(text)])
    return re.sub(r"\s+|\bt\.", "", text[:end])


def test_the_index_the_insert_and_the_holders_query_agree_on_a_live_key() -> None:
    index = live_predicate(MIGRATION.read_text(), "(task_name, unique_key)\n    WHERE")
    assert index.startswith("unique_keyISNOTNULLAND(state='READY'")
    for insert in ("enqueue_tasks", "enqueue_task"):
        assert live_predicate(query(insert), "ON CONFLICT (task_name, unique_key)\n    WHERE") == index
    assert live_predicate(query("unique_holders"), "USING (task_name, unique_key)\nWHERE") == index


@pytest.mark.parametrize(("key", "mode", "message"), [
    ("k", "always", "unique_while 'always' is invalid: use one of 'ready', 'ready_or_running'"),
    ("", "ready", "unique_key '' is invalid"),
    ("x" * 501, "ready", "is 501 characters long; use at most 500"),
    (7, "ready", "unique_key 7 is invalid"),
])
def test_bad_keys_and_modes_are_refused_naming_them(key: object, mode: str, message: str) -> None:
    with pytest.raises(InvalidTaskError, match=re.escape(message)):
        check_unique(key, mode)


def test_a_key_function_that_fails_or_returns_no_str_is_named() -> None:
    backend = DummyBackend()
    with pytest.raises(InvalidTaskError, match=r"unique_key function of task .*note failed for "
                                               r"args \[1\]"):
        note.using(backend=backend, unique_key=lambda n: str(1 // 0)).enqueue(1)
    with pytest.raises(InvalidTaskError, match="returned 1; return a str"):
        note.using(backend=backend, unique_key=lambda n: n).enqueue(1)
    with pytest.raises(InvalidTaskError, match="unique_conflict 'ignore' of task"):
        note.using(unique_conflict="ignore")  # type: ignore[arg-type]
    assert backend.results == []


def test_the_dummy_backend_returns_or_refuses_a_held_key() -> None:
    backend = DummyBackend()
    keyed = note.using(backend=backend, unique_key=lambda n: f"n{n}")
    first, second, again = keyed.enqueue_many([(1,), (2,), (1,)])
    assert again.id == first.id != second.id and len(backend.results) == 2

    with pytest.raises(DuplicateTaskError, match="unique_key 'n2' .* held by task 2") as caught:
        keyed.using(unique_conflict="raise").enqueue_many([(3,), (2,)])
    assert caught.value.existing.id == second.id and len(backend.results) == 2


def test_the_immediate_backend_frees_a_key_once_its_task_ran() -> None:
    ran.clear()
    backend = ImmediateBackend()
    first = note.using(backend=backend, unique_key="once").enqueue(1)
    second = note.using(backend=backend, unique_key="once").enqueue(2)

    assert first.status == second.status == TaskResultStatus.SUCCESSFUL
    assert first.id != second.id and ran == [1, 2]
