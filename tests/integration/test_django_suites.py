"""Django's own tasks suites against ``KubeTasksBackend``: Django 6.1's with a real
``kubetasks worker`` on Python 3.12, and django-tasks-db 0.13's on this interpreter (Django 5.2
and the ``django-tasks`` backport).

Django 6.1's ``tests/tasks`` comes from Django's sdist on PyPI (``pip download`` once, cached
under ``~/.cache/kubetasks/sdists``; nothing of it is kept in this repository). The only
adaptation: where a test names Django's Dummy or Immediate backend, it gets kubetasks'
``StoringBackend`` or ``WaitingBackend`` (``tests/django_suites/backends.py``). Every test must
pass or be listed in ``docs/django.md`` as not applicable, with the reason; a listed test that
starts passing fails this test too, so the list stays true. django-tasks-db's sdist lacks the
modules its tests import (``tests.tasks``, settings, URLs): ``tests/django_suites`` supplies
them, and its ``DatabaseBackend`` is read as ``KubeTasksBackend``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from kubetasks.migrations import migrate
from tests.django_suites.sdists import extract, sdist
from tests.integration.test_django import REPO, python312

DOCS = REPO / "docs" / "django.md"
ADAPTATION = {
    "django.tasks.backends.dummy.DummyBackend": "tests.django_suites.backends.StoringBackend",
    "django.tasks.backends.immediate.ImmediateBackend":
        "tests.django_suites.backends.WaitingBackend",
}


def not_applicable(section: str) -> set[str]:
    """The test ids listed in ``docs/django.md`` under the heading ``section``."""
    text = DOCS.read_text()
    start = text.index(f"## {section}")
    end = text.find("\n## ", start + 1)
    return set(re.findall(r"^\| `([\w.]+)` \|", text[start:end if end > 0 else None], re.M))


def adapted_django_suite(into: Path, python: str) -> Path:
    """Django's ``tests/`` folder with ``tasks`` only, its backends pointed at kubetasks."""
    top = extract(sdist("django==6.1.*", "django-6.1.*.tar.gz", python=python), "tests/tasks/", into)
    for module in (top / "tests" / "tasks").glob("*.py"):
        source = module.read_text()
        for django_backend, kubetasks_backend in ADAPTATION.items():
            source = source.replace(django_backend, kubetasks_backend)
        module.write_text(source)
    return top / "tests"


@pytest.fixture
def idle_database(postgresql: psycopg.Connection[Any]) -> Iterator[str]:
    """A second migrated database, which no worker serves; dropped afterwards."""
    info = postgresql.info
    name = f"{info.dbname}_idle"

    def admin(statement: str) -> None:
        with psycopg.connect(host=info.host, port=info.port, user=info.user, dbname="postgres",
                             autocommit=True) as conn:
            conn.execute(statement)

    admin(f'DROP DATABASE IF EXISTS "{name}"')
    admin(f'CREATE DATABASE "{name}"')
    url = f"postgresql://{info.user}@{info.host}:{info.port}/{name}"
    with psycopg.connect(url) as conn:
        migrate(connection=conn)
    yield url
    admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.timeout(900)
def test_django_61_tasks_suite(postgresql: psycopg.Connection[Any], idle_database: str,
                               tmp_path: Path) -> None:
    python = python312()
    version = subprocess.run([python, "-c", "import django; print(django.get_version())"],
                             capture_output=True, text=True, check=True).stdout.strip()
    assert version.startswith("6.1."), (
        f"{python} has Django {version}; the suite is Django 6.1's: "
        f"{python} -m pip install 'django>=6.1,<6.2' (as .ci/run does)")
    suite = adapted_django_suite(tmp_path, python)
    info = postgresql.info
    worker_url = f"postgresql://{info.user}@{info.host}:{info.port}/{info.dbname}"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.django_suites.django_settings",
        "KUBETASKS_TEST_DBNAME": info.dbname, "KUBETASKS_TEST_USER": info.user,
        "KUBETASKS_TEST_HOST": info.host, "KUBETASKS_TEST_PORT": str(info.port),
        "KUBETASKS_DATABASE_URL": worker_url, "KUBETASKS_SUITE_WORKER_URL": worker_url,
        "KUBETASKS_SUITE_IDLE_URL": idle_database,
        "PYTHONPATH": os.pathsep.join([str(suite), str(REPO), str(REPO / "src")]),
    }
    with (tmp_path / "worker.log").open("w") as log:
        worker = subprocess.Popen(
            [python, "-m", "kubetasks.cli", "worker", "--import", "kubetasks.contrib.django.setup",
             "--import", "tasks.tasks", "--queue", "default", "--queue", "queue-1",
             "--health-port", "0", "--concurrency", "4"],
            cwd=suite, env=env, stdout=log, stderr=log)
    try:
        report = tmp_path / "report.json"
        done = subprocess.run([python, "-m", "tests.django_suites.run_suite",
                               "--report", str(report), "tasks"],
                              cwd=suite, env=env, capture_output=True, text=True, timeout=800)
    finally:
        worker.terminate()
        worker.wait(timeout=60)
    (tmp_path / "suite.log").write_text(done.stderr)  # every failure's traceback, to read
    assert report.exists(), f"{done.stdout}\n{done.stderr[-6000:]}"
    outcomes: dict[str, str] = json.loads(report.read_text())
    not_passing = {test for test, outcome in outcomes.items() if outcome != "passed"}
    listed = not_applicable("Django 6.1's tests/tasks")
    assert len(outcomes) > 80, outcomes
    assert not_passing - listed == set(), (
        f"failing and not listed in docs/django.md: {sorted(not_passing - listed)}\n"
        f"{done.stderr[-12000:]}")
    assert listed - not_passing == set(), (
        f"listed as not applicable in docs/django.md but passing: {sorted(listed - not_passing)}")


DB_SUITE_ADAPTATION = {"django_tasks_db.DatabaseBackend": "kubetasks.contrib.django.KubeTasksBackend"}
URLS = ('from django.contrib import admin\nfrom django.urls import path\n\n'
        'urlpatterns = [path("admin/", admin.site.urls)]\n')


def adapted_db_suite(into: Path) -> Path:
    """django-tasks-db's sdist (its package and ``tests/tests.py``), with what the sdist lacks
    (``tests.tasks``, settings, URLs) from ``tests/django_suites`` and the backend pointed at
    kubetasks."""
    top = extract(sdist("django-tasks-db==0.13.*", "django_tasks_db-0.13.*.tar.gz",
                        python=sys.executable), "", into)
    tests = top / "tests"
    source = (tests / "tests.py").read_text()
    for theirs, ours in DB_SUITE_ADAPTATION.items():
        source = source.replace(theirs, ours)
    (tests / "tests.py").write_text(source)
    here = REPO / "tests" / "django_suites"
    shutil.copy(here / "db_suite_tasks.py", tests / "tasks.py")
    for name in ("settings.py", "db_worker_test_settings.py"):
        shutil.copy(here / "db_suite_settings.py", tests / name)
    (tests / "urls.py").write_text(URLS)
    shutil.copy(here / "run_suite.py", top / "kubetasks_run_suite.py")
    return top


@pytest.mark.timeout(900)
def test_django_tasks_db_suite(postgresql: psycopg.Connection[Any], tmp_path: Path) -> None:
    top = adapted_db_suite(tmp_path)
    info = postgresql.info
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "KUBETASKS_TEST_DBNAME": info.dbname, "KUBETASKS_TEST_USER": info.user,
        "KUBETASKS_TEST_HOST": info.host, "KUBETASKS_TEST_PORT": str(info.port),
        "KUBETASKS_DATABASE_URL": f"postgresql://{info.user}@{info.host}:{info.port}/{info.dbname}",
        "PYTHONPATH": os.pathsep.join([str(top), str(REPO / "src")]),
    }
    report = tmp_path / "report.json"
    done = subprocess.run([sys.executable, "-m", "kubetasks_run_suite", "--report", str(report),
                           "tests.tests"], cwd=top, env=env, capture_output=True, text=True,
                          timeout=800)
    (tmp_path / "suite.log").write_text(done.stderr)
    assert report.exists(), f"{done.stdout}\n{done.stderr[-6000:]}"
    outcomes: dict[str, str] = json.loads(report.read_text())
    not_passing = {test for test, outcome in outcomes.items() if outcome != "passed"}
    listed = not_applicable("django-tasks-db 0.13's suite")
    assert len(outcomes) > 90, outcomes
    assert not_passing - listed == set(), (
        f"failing and not listed in docs/django.md: {sorted(not_passing - listed)}\n"
        f"{done.stderr[-12000:]}")
    assert listed - not_passing == set(), (
        f"listed as not applicable in docs/django.md but passing: {sorted(listed - not_passing)}")
