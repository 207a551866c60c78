from __future__ import annotations

import os

# Tests choose their backend explicitly; nothing leaks in from the caller's environment.
for name in ("KUBETASKS_BACKEND", "KUBETASKS_DATABASE_URL", "KUBETASKS_QUEUES"):
    os.environ.pop(name, None)
