"""Django's tasks framework on kubetasks, with a real settings module, per Django line.

Each scenario runs in its own interpreter: Django 4.2-5.x with the django-tasks backport on
this interpreter, and Django 6 (built-in ``django.tasks``) on Python >= 3.12.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest

REPO = Path(__file__).resolve().parents[2]


def python312() -> str:
    """An interpreter >= 3.12 with Django 6: KUBETASKS_PYTHON312, pyenv's, or python3.12."""
    configured = os.environ.get("KUBETASKS_PYTHON312")
    if configured:
        return configured
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    for candidate in sorted(pyenv_root.glob("versions/3.1[2-9]*/bin/python")):
        return str(candidate)  # the oldest >= 3.12, as .ci/run picks
    found = shutil.which("python3.12")
    if found:
        return found
    raise RuntimeError("no Python >= 3.12 found for the Django 6 test: install one (e.g. pyenv "
                       "install 3.12) or set KUBETASKS_PYTHON312; .ci/run sets it up")


def run_scenario(python: str, postgresql: psycopg.Connection[Any]) -> str:
    info = postgresql.info
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.django_project.settings",
        "KUBETASKS_TEST_DBNAME": info.dbname, "KUBETASKS_TEST_USER": info.user,
        "KUBETASKS_TEST_HOST": info.host, "KUBETASKS_TEST_PORT": str(info.port),
        "KUBETASKS_REPO": str(REPO), "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'src'}",
    }
    done = subprocess.run([python, "-m", "tests.django_project.scenario"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr[-4000:]}"
    return done.stdout


@pytest.mark.parametrize("line", ["backport", "django6"])
def test_django_tasks_api_on_kubetasks(line: str, postgresql: psycopg.Connection[Any]) -> None:
    python = sys.executable if line == "backport" else python312()
    out = run_scenario(python, postgresql)

    version = out.splitlines()[0]
    assert version.startswith("django 6." if line == "django6" else "django 5.") or (
        line == "backport" and version.startswith("django 4."))
    assert "KubeTasksBackend" in version
    assert "exists only if committed" in out
    assert "a broken ORM connection is replaced before the next task" in out
    assert "unknown queue refused: Queue 'unknown' is not valid for backend." in out
    assert out.rstrip().endswith("OK")
