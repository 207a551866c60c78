"""Starting and stopping the local processes of the test cluster.

Each process gets its own process group, so stopping it also stops whatever it
started, and it is told by the kernel to die with the thread that started it,
so an aborted test session leaves nothing running behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

_PR_SET_PDEATHSIG = 1
_SIGKILL = int(signal.SIGKILL)
_libc = ctypes.CDLL(None, use_errno=True)
_prctl = getattr(_libc, "prctl", None)


def _die_with_parent() -> None:
    # Runs in the child between fork and exec; keep it to one system call.
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, _SIGKILL)


def spawn(
    argv: Sequence[str],
    *,
    output: IO[bytes],
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in a new process group, its stdout and stderr going to ``output``."""
    return subprocess.Popen(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=output,
        stderr=subprocess.STDOUT,
        env=dict(env) if env is not None else None,
        cwd=cwd,
        start_new_session=True,
        # Safe beside threads: one system call through a function resolved at import.
        preexec_fn=_die_with_parent,  # noqa: PLW1509
    )


def signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    """Send ``sig`` to the process group that ``process`` leads, if it is still there."""
    # PermissionError: the group is gone and its id was reused by someone else's.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)


def terminate(process: subprocess.Popen[bytes], *, grace: float) -> None:
    """SIGTERM the group, SIGKILL it after ``grace`` seconds, and reap the process."""
    signal_group(process, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace)
    # Children may outlive the leader; the group is killed either way.
    signal_group(process, signal.SIGKILL)
    process.wait()


def alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie waiting to be reaped counts as dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # The state letter follows the parenthesised command name, which may hold spaces.
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")
