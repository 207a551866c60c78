"""Tasks that the worker pods of the operator tests run (imported with --import)."""

from __future__ import annotations

import os
import time

from kubetasks import task


@task
def short(n: int) -> str:
    time.sleep(0.05)
    return os.environ.get("POD_NAME", "")


@task
def long(seconds: float) -> str:
    time.sleep(seconds)
    return os.environ.get("POD_NAME", "")
