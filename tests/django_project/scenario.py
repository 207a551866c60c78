"""Django's tasks API on kubetasks, end to end: run as a script under each Django version.

Environment: KUBETASKS_TEST_* (the database), DJANGO_SETTINGS_MODULE, KUBETASKS_REPO.
Prints one line per step; exits non-zero at the first failed check.
"""

import os
import subprocess
import sys
import time
from datetime import timedelta

import django

django.setup()

from django.db import connection, transaction  # noqa: E402
from django.utils import timezone  # noqa: E402

if django.VERSION >= (6, 0):
    from django.tasks import TaskResultStatus, default_task_backend, task_backends
    from django.tasks.exceptions import InvalidTask
else:
    from django_tasks import TaskResultStatus, default_task_backend, task_backends
    from django_tasks.exceptions import InvalidTaskError as InvalidTask

from tests.django_project.tasks import (  # noqa: E402
    attempt_number,
    database_session,
    send_welcome,
)


def count() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM kubetasks_tasks")
        return int(cursor.fetchone()[0])


def wait_finished(result, seconds: float = 20.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        result.refresh()
        if result.is_finished:
            return result
        time.sleep(0.05)
    raise AssertionError(f"task {result.id} still {result.status} after {seconds}s")


print("django", django.get_version(), "backend", type(task_backends["default"]).__name__)

result = send_welcome.enqueue(1, template="short")
assert result.status == TaskResultStatus.READY, result.status
assert default_task_backend.get_result(result.id).args == [1]
print("enqueue: READY, get_result works")

later = send_welcome.using(run_after=timezone.now() + timedelta(hours=1), priority=9).enqueue(2)
stored = send_welcome.get_result(later.id)
assert (stored.task.priority, stored.task.queue_name) == (9, "emails"), stored.task
assert stored.task.run_after > timezone.now() + timedelta(minutes=59)
print("using(run_after, priority): stored and read back")

import threading  # noqa: E402

from_another_thread: list[object] = []
reader = threading.Thread(target=lambda: from_another_thread.append(
    send_welcome.get_result(result.id).args))
reader.start()
reader.join()
assert from_another_thread == [[1]], from_another_thread
print("get_result from another thread (another backend instance) works")

try:
    send_welcome.using(queue_name="unknown")
except InvalidTask as error:
    print("unknown queue refused:", error)
else:
    raise AssertionError("unknown queue accepted")

before = count()
try:
    with transaction.atomic():
        send_welcome.enqueue(3)
        raise RuntimeError("roll back")
except RuntimeError:
    pass
assert count() == before, "a rolled-back enqueue left a task"
with transaction.atomic():
    committed = send_welcome.enqueue(4)
assert count() == before + 1
print("enqueue inside transaction.atomic(): exists only if committed")

context_result = attempt_number.enqueue()
repo = os.environ["KUBETASKS_REPO"]
worker = subprocess.Popen(
    [sys.executable, "-m", "kubetasks.cli", "worker", "--queue", "emails", "--queue", "default",
     "--import", "kubetasks.contrib.django.setup", "--import", "tests.django_project.tasks",
     "--health-port", "0", "--concurrency", "1"],  # one thread: it keeps its connection
    cwd=repo, env={**os.environ, "KUBETASKS_DATABASE_URL": "postgresql://{USER}@{HOST}:{PORT}/{NAME}"
                   .format(**connection.settings_dict)},
)
try:
    done = wait_finished(committed)
    assert done.status == TaskResultStatus.SUCCESSFUL, (done.status, done.errors)
    assert done.return_value == "welcome 4 with default", done.return_value
    assert wait_finished(context_result).return_value == 1
    first_session = wait_finished(database_session.enqueue()).return_value
    with connection.cursor() as cursor:  # as a PostgreSQL restart does to the worker's session
        cursor.execute("SELECT pg_terminate_backend(%s)", [first_session])
    after = wait_finished(database_session.enqueue())
    assert after.status == TaskResultStatus.SUCCESSFUL, [e.traceback for e in after.errors]
    assert after.return_value != first_session
    print("a broken ORM connection is replaced before the next task, as a request would")
finally:
    worker.terminate()
    worker.wait(timeout=30)
print("worker ran the Django task: return value read back through Django")
print("OK")
