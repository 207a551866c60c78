from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import pytest

# Tests choose their backend explicitly; nothing leaks in from the caller's environment.
for name in ("KUBETASKS_BACKEND", "KUBETASKS_DATABASE_URL", "KUBETASKS_QUEUES"):
    os.environ.pop(name, None)


@pytest.fixture(autouse=True)
def _root_logging_restored() -> Iterator[None]:
    """A command run in-process points the root logger at the stderr pytest captured for that
    test; put the handlers back so later tests do not log to a closed stream."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
