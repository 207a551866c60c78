"""Django's semantics on kubetasks, end to end: signals in both processes, Django's
TaskContext, Django's errors, results read back equal to what enqueue returned, and results
read in a process that never imported the task's module. Run under each Django line.

Environment: as ``scenario.py``, and KUBETASKS_TEST_SIGNALS (a file receivers append to).
Prints one line per step; exits non-zero at the first failed check.
"""

import json
import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import django

django.setup()

from django.db import connection  # noqa: E402
from django.utils import timezone  # noqa: E402

from kubetasks.exceptions import InvalidTaskError  # noqa: E402

if django.VERSION >= (6, 0):
    from django.tasks import TaskResultStatus, default_task_backend
else:
    from django_tasks import TaskResultStatus, default_task_backend

from tests.django_project import signal_tasks  # noqa: E402

SIGNALS = Path(os.environ["KUBETASKS_TEST_SIGNALS"])
WORKER_LOG = SIGNALS.with_name("worker.log")


def signals_of(result_id: str) -> list[list[str]]:
    lines = SIGNALS.read_text().splitlines() if SIGNALS.exists() else []
    return [line.split() for line in lines if line.split()[2] == result_id]


def wait_finished(result, seconds: float = 30.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        result.refresh()
        if result.is_finished:
            return result
        time.sleep(0.05)
    raise AssertionError(f"task {result.id} still {result.status} after {seconds}s")


print("django", django.get_version())

# Results read back equal what enqueue returned, run_after included (None when none was set).
plain = signal_tasks.add.enqueue(1, 2)
assert plain.task.run_after is None
read = default_task_backend.get_result(plain.id)
assert read.task.run_after is None, read.task.run_after
assert read == plain, (read, plain)
later = timezone.now() + timedelta(hours=1)
deferred = signal_tasks.add.using(run_after=later).enqueue(3, 4)
assert default_task_backend.get_result(deferred.id) == deferred
assert default_task_backend.get_result(deferred.id).task.run_after == later
print("get_result equals enqueue's result; run_after as the caller set it")

# task_enqueued fires in the enqueuing process, after the write, with the result.
assert signals_of(plain.id) == [[str(os.getpid()), "enqueued", plain.id, "READY",
                                 "KubeTasksBackend"]], signals_of(plain.id)
print("task_enqueued fired in the enqueuing process")

# A non-JSON argument: Django's TypeError, and kubetasks' InvalidTaskError, nothing written.
try:
    signal_tasks.add.enqueue(timezone.now(), 1)
except TypeError as error:
    assert isinstance(error, InvalidTaskError), type(error).__mro__
    assert "Unsupported type" in str(error) and "signal_tasks.add" in str(error), error
    print("non-JSON argument refused:", error)
else:
    raise AssertionError("a datetime argument was accepted")

# A process that never imported signal_tasks reads a result (as Django's database backend can).
reader = subprocess.run(
    [sys.executable, "-c", "import django; django.setup(); "
     "from kubetasks.contrib.django import KubeTasksBackend; import sys; "
     "from django.conf import settings; "
     "b = KubeTasksBackend('default', settings.TASKS['default']); "
     f"r = b.get_result({plain.id!r}); "
     "print(r.status, r.args, r.task.module_path, "
     "'tests.django_project.signal_tasks' in sys.modules)"],
    capture_output=True, text=True, timeout=60)
assert reader.returncode == 0, reader.stderr[-3000:]
assert reader.stdout.split() == ["READY", "[1,", "2]", "tests.django_project.signal_tasks.add",
                                 "False"], reader.stdout
print("get_result in a process without the task's module:", reader.stdout.strip())

import kubetasks  # noqa: E402

kubetasks.configure("postgres", database_url="postgresql://{USER}@{HOST}:{PORT}/{NAME}"
                    .format(**connection.settings_dict))
plain_kubetasks = signal_tasks.plain_double.enqueue(21)
failing = signal_tasks.fails.enqueue()
failing_async = signal_tasks.fails_async.enqueue()
bad_return = signal_tasks.returns_a_function.enqueue()
with_context = signal_tasks.context_seen.enqueue("x")
repo = os.environ["KUBETASKS_REPO"]
worker = subprocess.Popen(
    [sys.executable, "-m", "kubetasks.cli", "worker", "--queue", "default",
     "--import", "kubetasks.contrib.django.setup", "--import", "tests.django_project.signal_tasks",
     "--health-port", "0", "--concurrency", "2"],
    cwd=repo, stderr=WORKER_LOG.open("w"),
    env={**os.environ, "KUBETASKS_DATABASE_URL": "postgresql://{USER}@{HOST}:{PORT}/{NAME}"
         .format(**connection.settings_dict)})
try:
    done = wait_finished(plain)
    assert (done.status, done.return_value) == (TaskResultStatus.SUCCESSFUL, 3)
    failed = wait_finished(failing)
    assert failed.status == TaskResultStatus.FAILED
    assert failed.errors[0].exception_class_path == "builtins.ValueError"
    failed_async = wait_finished(failing_async)
    assert failed_async.status == TaskResultStatus.FAILED
    assert failed_async.errors[-1].traceback.endswith(
        "ValueError: this async task fails on purpose\n"), failed_async.errors[-1].traceback
    returned = wait_finished(bad_return)
    assert returned.status == TaskResultStatus.FAILED
    assert returned.errors[0].exception_class is TypeError, returned.errors[0]
    assert "Unsupported type: <class 'function'>" in returned.errors[0].traceback
    print("non-JSON return value: TypeError, as Django words it")
    seen = wait_finished(with_context).return_value
    assert seen == {"django_context": True, "id": with_context.id, "attempt": 1,
                    "status": "RUNNING", "label": "x"}, seen
    print("takes_context: Django's TaskContext with Django's TaskResult")
    assert wait_finished(plain_kubetasks).return_value == 42
finally:
    worker.terminate()
    worker.wait(timeout=30)
log = WORKER_LOG.read_text()

# MAX_ATTEMPTS is 2: task_started for every attempt, task_finished once no attempt is left.
for result, final in ((done, "SUCCESSFUL"), (failed, "FAILED"), (returned, "FAILED"),
                      (failed_async, "FAILED")):
    fired = [line[1:4] for line in signals_of(result.id) if line[0] != str(os.getpid())]
    expected = [["started", result.id, "RUNNING"]] * result.attempts
    assert fired == [*expected, ["finished", result.id, final]], fired
    assert all(line[0] == str(worker.pid) for line in signals_of(result.id)[1:])
assert (done.attempts, failed.attempts) == (1, 2)
assert signals_of(plain_kubetasks.id) == [], signals_of(plain_kubetasks.id)
print("task_started (each attempt) and task_finished (the last) fired in the worker")

logger = "django.tasks" if django.VERSION >= (6, 0) else "django_tasks"
for result, state in ((done, "SUCCESSFUL"), (failed, "FAILED"), (failed_async, "FAILED")):
    lines = [line for line in log.splitlines() if f"Task id={result.id} " in line]
    assert len(lines) == result.attempts + 1, (lines, log[-3000:])
    assert all("state=RUNNING" in line for line in lines[:-1]), lines
    assert f"state={state}" in lines[-1], lines
    assert all(logger in line for line in lines), lines
for result, message in ((failing, "this task fails on purpose"),
                        (failing_async, "this async task fails on purpose")):
    entries = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    final = [e for e in entries if e["logger"] == logger
             and e["message"].startswith(f"Task id={result.id} ") and "state=FAILED" in e["message"]]
    assert len(final) == 1 and f"ValueError: {message}" in final[0].get("exception", ""), final
print(f"Django's {logger} log lines in the worker's log, the failure with its traceback")
print("OK")
