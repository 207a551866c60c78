"""An argus-like project (examples/django_app) switching from django-tasks-db by its settings:
``manage.py migrate`` makes kubetasks' schema, ``manage.py kubetasks_worker`` runs its ORM
tasks and their follow-ups, ``manage.py kubetasks_prune`` prunes, the admin retries and
cancels, ``manage.py check`` refuses a bare backend swap. Every step is a real ``manage.py``
process on a real PostgreSQL (Django 4.2-5.x with the django-tasks backport here)."""

from __future__ import annotations

import ast
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from localcluster.polling import wait_until

from kubetasks import TaskResultStatus
from kubetasks.backends import PostgresBackend
from kubetasks.store import Store
from tests.django_project import kubetasks_orm
from tests.integration.test_django import python312
from tests.integration.worker_process import wait_state

REPO = Path(__file__).resolve().parents[2]
PROJECT = REPO / "examples" / "django_app"
SCHEMA_OBJECTS = """
SELECT 'column', table_name || '.' || column_name || ' ' || data_type || ' '
       || is_nullable || ' ' || coalesce(column_default, '')
FROM information_schema.columns WHERE table_schema = 'public' AND table_name LIKE 'kubetasks%%'
UNION ALL SELECT 'index', indexdef FROM pg_indexes
WHERE schemaname = 'public' AND tablename LIKE 'kubetasks%%'
UNION ALL SELECT 'constraint', conrelid::regclass || ' ' || conname || ' ' || pg_get_constraintdef(oid)
FROM pg_constraint WHERE conrelid::regclass::text LIKE 'kubetasks%%'
UNION ALL SELECT 'type', t.typname || ' ' || string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder)
FROM pg_type t JOIN pg_enum e ON e.enumtypid = t.oid GROUP BY t.typname
UNION ALL SELECT 'function', proname || ' ' || md5(prosrc) FROM pg_proc
WHERE proname LIKE 'kubetasks%%'
UNION ALL SELECT 'trigger', tgname || ' ' || tgrelid::regclass FROM pg_trigger
WHERE tgname LIKE 'kubetasks%%'
UNION ALL SELECT 'migration', version || ' ' || name FROM kubetasks_migrations
"""


def url_of(info: Any, dbname: str) -> str:
    return f"postgresql://{info.user}@{info.host}:{info.port}/{dbname}"


@pytest.fixture
def empty_database(postgresql: psycopg.Connection[Any]) -> Iterator[str]:
    """A database with nothing in it, on the test server: what a new project starts from."""
    info = postgresql.info
    name = f"django_{uuid.uuid4().hex[:12]}"
    admin = url_of(info, "postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield url_of(info, name)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def manage_env(database_url: str, settings: str = "alerts.settings") -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KUBETASKS_", "PG"))}
    return {**env, "DATABASE_URL": database_url, "DJANGO_SETTINGS_MODULE": settings,
            "PYTHONPATH": os.pathsep.join([str(PROJECT), str(REPO / "src"), str(REPO)])}


def manage(database_url: str, *args: str, settings: str = "alerts.settings",
           check: bool = True, python: str = sys.executable) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([python, "manage.py", *args], cwd=PROJECT, text=True,
                          capture_output=True, timeout=120, env=manage_env(database_url, settings))
    if check:
        assert done.returncode == 0, f"manage.py {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done


def start_worker(database_url: str, *args: str,
                 python: str = sys.executable) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [python, "manage.py", "kubetasks_worker", "--health-port", "0", *args],
        cwd=PROJECT, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        env=manage_env(database_url))


@contextmanager
def stopped_cleanly(worker: subprocess.Popen[str]) -> Iterator[subprocess.Popen[str]]:
    """The worker, stopped by SIGTERM (it must exit 0) when the block ends; on a failure in the
    block, killed, with its output in the error."""
    try:
        yield worker
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0
    except (AssertionError, TimeoutError) as error:
        worker.kill()
        raise AssertionError(f"{error}\nworker:\n{worker.communicate()[0][-6000:]}") from None
    finally:
        if worker.poll() is None:
            worker.kill()


def schema(url: str) -> set[tuple[str, str]]:
    with psycopg.connect(url) as conn:
        return {(kind, text) for kind, text in conn.execute(SCHEMA_OBJECTS)}


def states(url: str) -> dict[str, str]:
    """task name (last part) and state of every task, by id."""
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT id, task_name, state FROM kubetasks_tasks ORDER BY id")
        return {str(i): f"{name.rsplit('.', 1)[-1]} {state}" for i, name, state in rows}


def scalar(url: str, sql: str) -> Any:
    with psycopg.connect(url) as conn:
        row = conn.execute(sql).fetchone()
    assert row is not None
    return row[0]


# -- the schema --------------------------------------------------------------------------


def test_manage_py_migrate_makes_the_schema_kubetasks_migrate_makes(
        empty_database: str, dsn: str) -> None:
    manage(empty_database, "migrate", "--noinput")
    made_by_django = schema(empty_database)
    assert ("column", "kubetasks_tasks.queue_name text NO ") in made_by_django
    assert made_by_django == schema(dsn)  # dsn: a database `kubetasks migrate` made
    # Django records its own migrations; a second migrate, or `kubetasks migrate`, finds it done.
    assert "[X] 0001_initial" in manage(empty_database, "showmigrations", "kubetasks").stdout
    manage(empty_database, "migrate", "--noinput")
    assert schema(empty_database) == made_by_django


def test_manage_py_migrate_on_a_database_kubetasks_migrate_made(dsn: str) -> None:
    before = schema(dsn)
    manage(dsn, "migrate", "--noinput")
    assert schema(dsn) == before
    assert scalar(dsn, "SELECT count(*) FROM incidents_incident") == 0


def test_there_is_a_django_migration_for_every_sql_migration() -> None:
    sql = sorted(p.name[:4] for p in (REPO / "src/kubetasks/sql/migrations").glob("[0-9]*.sql"))
    folder = REPO / "src/kubetasks/contrib/django/migrations"
    django = sorted(p.name[:4] for p in folder.glob("[0-9]*.py"))
    assert django == sql, "add a Django migration applying the new SQL migration (see 0002)"
    for path in folder.glob("[0-9]*.py"):  # each applies the SQL migrations up to its number
        calls = [n for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Call)
                 and getattr(n.func, "id", "") == "apply_sql_migrations"]
        assert [ast.literal_eval(c.args[0]) for c in calls] == [int(path.name[:4])], path.name


def test_the_model_of_the_admin_needs_no_new_django_migration(dsn: str) -> None:
    done = manage(dsn, "makemigrations", "kubetasks", "--check", "--dry-run", check=False)
    assert done.returncode == 0, done.stdout + done.stderr


# -- check, admin, prune -----------------------------------------------------------------


def test_check_refuses_a_bare_backend_swap_naming_what_to_set(dsn: str, tmp_path: Path) -> None:
    (tmp_path / "bare_swap.py").write_text(
        "from alerts.settings import *  # noqa: F403\n"
        "TASKS = {'default': {'BACKEND': 'kubetasks.contrib.django.KubeTasksBackend'}}\n")
    env = manage_env(dsn, "bare_swap")
    env["PYTHONPATH"] += os.pathsep + str(tmp_path)
    done = subprocess.run([sys.executable, "manage.py", "check"], cwd=PROJECT, text=True,
                          capture_output=True, timeout=120, env=env)
    assert done.returncode == 1
    assert "kubetasks.E001" in done.stderr
    assert """set "OPTIONS": {"DATABASE": "default"}""" in done.stderr
    assert manage(dsn, "check").returncode == 0  # the project's settings pass


ADMIN_ACTION = """
from django.test.utils import setup_test_environment
setup_test_environment()  # responses keep their context (the messages)
from django.contrib.auth.models import User
from django.test import Client
from kubetasks.contrib.django.models import Task
user, _ = User.objects.get_or_create(username="admin", is_staff=True, is_superuser=True)
client = Client()
client.force_login(user)
ids = [str(i) for i in Task.objects.order_by("id").values_list("id", flat=True)]
listing = client.get("/admin/kubetasks/task/?state__exact=READY&queue_name=default")
assert listing.status_code == 200, listing.status_code
print("listed", listing.content.decode().count('name="_selected_action"'))
response = client.post("/admin/kubetasks/task/", {
    "action": "ACTION", "_selected_action": ids, "index": 0}, follow=True)
print(*[str(m) for m in response.context["messages"]], sep="\\n")
detail = client.get(f"/admin/kubetasks/task/{ids[0]}/change/")
print("detail", detail.status_code, "boom-traceback" in detail.content.decode())
"""


def admin(url: str, action: str) -> str:
    return manage(url, "shell", "-c", ADMIN_ACTION.replace("ACTION", action)).stdout


def test_admin_lists_and_cancels_then_prune_deletes_only_past_their_age(dsn: str) -> None:
    manage(dsn, "migrate", "--noinput")
    manage(dsn, "open_incident", "disk full")
    manage(dsn, "open_incident", "link down")
    out = admin(dsn, "cancel_tasks")
    assert "listed 2" in out and "2 tasks cancelled" in out
    assert set(states(dsn).values()) == {"open_incident CANCELLED"}
    assert scalar(dsn, "SELECT string_agg(DISTINCT cancelled_by, ',') FROM kubetasks_tasks") == (
        "admin (Django admin)")

    refused = manage(dsn, "kubetasks_prune", "--min-age-days", "-1", check=False)
    assert refused.returncode != 0 and "'-1' is not an age in days" in refused.stderr
    assert "deleted 0" in manage(dsn, "kubetasks_prune").stdout  # 14 days by default
    dry = manage(dsn, "kubetasks_prune", "--min-age-days", "0", "--dry-run").stdout
    assert "would delete 2 finished tasks (dry run)" in dry
    assert len(states(dsn)) == 2
    assert "deleted 0" in manage(dsn, "kubetasks_prune", "--min-age-days", "0",
                                 "--queue-name", "notifications,reports").stdout
    assert "deleted 2" in manage(dsn, "kubetasks_prune", "--min-age-days", "0").stdout
    assert states(dsn) == {}


def test_admin_retries_a_failed_task_with_its_errors_shown(dsn: str) -> None:
    manage(dsn, "migrate", "--noinput")
    manage(dsn, "open_incident", "disk full")
    with psycopg.connect(dsn) as conn:  # as a worker leaves a task whose only attempt failed
        conn.execute("""UPDATE kubetasks_tasks SET state = 'FAILED', attempts = 1,
                        finished_at = now(), errors = '[{"attempt": 1, "traceback":
                        "boom-traceback", "exception_class_path": "builtins.ValueError"}]'""")
    out = admin(dsn, "retry_tasks")
    assert "1 tasks retried" in out and "detail 200 True" in out
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT state, attempts, max_attempts, finished_at, "
                           "jsonb_array_length(errors) FROM kubetasks_tasks").fetchone()
    assert row == ("READY", 1, 2, None, 1)  # one more attempt; the error stays as history
    again = admin(dsn, "retry_tasks")  # a READY task is not retried again
    assert "1 tasks were left as they are (not FAILED or CANCELLED)" in again


# -- the worker --------------------------------------------------------------------------


def settings_names(module: str) -> dict[str, Any]:
    env = manage_env("postgresql://nobody@localhost/none", module)
    code = (f"import {module} as s, json; print(json.dumps("
            "{k: repr(getattr(s, k)) for k in dir(s) if k.isupper()}))")
    done = subprocess.run([sys.executable, "-c", code], cwd=PROJECT, env=env, text=True,
                          capture_output=True, timeout=60, check=True)
    return dict(json.loads(done.stdout))


def test_the_two_settings_differ_only_in_tasks_and_installed_apps() -> None:
    before, after = settings_names("alerts.settings_tasks_db"), settings_names("alerts.settings")
    assert before.keys() == after.keys()
    assert {k for k in before if before[k] != after[k]} == {"TASKS", "INSTALLED_APPS"}


@pytest.mark.parametrize("line", ["backport", "django6"])
def test_argus_like_project_runs_its_orm_tasks_and_their_follow_ups(line: str, dsn: str) -> None:
    python = sys.executable if line == "backport" else python312()
    manage(dsn, "migrate", "--noinput", python=python)
    opened = manage(dsn, "open_incident", "disk full", "--destinations", "3", "--report",
                    python=python).stdout
    assert "report task" in opened
    # db_worker's flags, as argus's process supervisor runs it; no database URL given.
    with stopped_cleanly(start_worker(dsn, "--queue-name", "*", "--exclude-queues", "reports",
                                      "--interval", "0", "--no-startup-delay", python=python)):
        def notified() -> bool:
            return scalar(dsn, "SELECT count(*) FROM incidents_notification") == 3
        wait_until(notified, timeout=60, what="3 notifications sent by follow-up tasks")
    done = sorted(states(dsn).values())
    assert done == ["count_notifications READY", "open_incident SUCCESSFUL",
                    *["send_notification SUCCESSFUL"] * 3]
    # The excluded queue's task, by a worker that runs what is due, at most 1 task, then exits.
    batch = start_worker(dsn, "--queue-name", "reports", "--batch", "--max-tasks", "1",
                         python=python)
    out, _ = batch.communicate(timeout=60)
    assert batch.returncode == 0, out
    assert "count_notifications SUCCESSFUL" in states(dsn).values()
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT return_value FROM kubetasks_tasks "
                           "WHERE task_name LIKE '%count_notifications'").fetchone()
    assert row is not None and row[0] == 3

    assert "deleted 5" in manage(dsn, "kubetasks_prune", "--min-age-days", "0",
                                 python=python).stdout


def test_worker_refuses_reload_and_a_backend_that_is_not_kubetasks(dsn: str) -> None:
    reload = manage(dsn, "kubetasks_worker", "--reload", check=False)
    assert reload.returncode == 1 and "--reload is not supported" in reload.stderr
    other = manage(dsn, "kubetasks_worker", "--backend", "other", check=False)
    assert other.returncode == 1
    assert "TASKS has no 'other' backend using kubetasks.contrib.django" in other.stderr


def test_a_kubetasks_task_gets_a_new_orm_connection_after_the_server_ended_its_session(
        dsn: str, store: Store) -> None:
    # kubetasks' own @task functions (not Django tasks) using the ORM, in a Django worker whose
    # one thread keeps its ORM connection between tasks, as with CONN_MAX_AGE.
    backend = PostgresBackend(store)
    with stopped_cleanly(start_worker(dsn, "--import", "tests.django_project.kubetasks_orm",
                                      "--queue", kubetasks_orm.QUEUE, "--concurrency", "1")):
        for task in (kubetasks_orm.orm_session, kubetasks_orm.async_orm_session):
            first = wait_state(store, task.using(backend=backend).enqueue().id, timeout=60)
            assert first.state == TaskResultStatus.SUCCESSFUL, (task.name, first.errors)
            with psycopg.connect(dsn, autocommit=True) as conn:  # as a PostgreSQL restart does
                conn.execute("SELECT pg_terminate_backend(%s)", [first.return_value])
            after = wait_state(store, task.using(backend=backend).enqueue().id, timeout=60)
            assert after.state == TaskResultStatus.SUCCESSFUL, (task.name, after.errors)
            assert after.return_value != first.return_value
