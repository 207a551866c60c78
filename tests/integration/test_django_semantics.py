"""Django's semantics on kubetasks under each Django line (``tests/django_project/semantics.py``):
Django's signals in the enqueuing process and in the worker, with Django's own log lines;
Django's ``TaskContext``; Django's errors; results read back equal to enqueue's; results read
in a process that never imported the task's module."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.integration.test_django import REPO, python312


@pytest.mark.parametrize("line", ["backport", "django6"])
def test_django_semantics(line: str, postgresql: psycopg.Connection[Any], tmp_path: Path) -> None:
    python = sys.executable if line == "backport" else python312()
    info = postgresql.info
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.django_project.settings",
        "KUBETASKS_TEST_DBNAME": info.dbname, "KUBETASKS_TEST_USER": info.user,
        "KUBETASKS_TEST_HOST": info.host, "KUBETASKS_TEST_PORT": str(info.port),
        "KUBETASKS_REPO": str(REPO), "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'src'}",
        "KUBETASKS_TEST_SIGNALS": str(tmp_path / "signals"),
    }
    done = subprocess.run([python, "-m", "tests.django_project.semantics"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr[-4000:]}"
    assert done.stdout.splitlines()[0].startswith("django 6." if line == "django6" else "django 5.")
    assert done.stdout.rstrip().endswith("OK")
