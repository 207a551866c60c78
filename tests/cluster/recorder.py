"""The program test pods run: it records who it is, and the signals it gets.

On start it writes ``$OUT_DIR/$POD_NAME.json`` with its pid and environment.
On SIGTERM it appends to ``$OUT_DIR/$POD_NAME.term``, then exits 0 — or keeps
running when ``ON_SIGTERM=ignore`` (to be killed at the end of the grace period).
``EXIT_CODE=n`` makes it exit with ``n`` right after recording.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType

out = Path(os.environ["OUT_DIR"])
name = os.environ["POD_NAME"]


def on_sigterm(signum: int, frame: FrameType | None) -> None:
    with (out / f"{name}.term").open("a") as record:
        record.write(f"{os.getpid()} {time.time()}\n")
    if os.environ.get("ON_SIGTERM") != "ignore":
        sys.exit(0)


signal.signal(signal.SIGTERM, on_sigterm)
partial = out / f".{name}.{os.getpid()}.json"
partial.write_text(json.dumps({"pid": os.getpid(), "cwd": os.getcwd(), "env": dict(os.environ)}))
partial.rename(out / f"{name}.json")
print(f"recorder {name} started as pid {os.getpid()}", flush=True)
if "EXIT_CODE" in os.environ:
    sys.exit(int(os.environ["EXIT_CODE"]))
while True:
    time.sleep(0.5)
