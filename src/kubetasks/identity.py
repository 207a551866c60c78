"""Who claimed a task: the pod (from the downward API) and one process in it."""

from __future__ import annotations

import getpass
import os
import secrets
import socket
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class WorkerIdentity:
    """Recorded on every claim. The nonce tells two processes of one pod apart, so a restarted
    container can put back what its predecessor held without touching its own claims."""

    pod_name: str
    pod_uid: str
    nonce: str

    @property
    def worker_id(self) -> str:
        return f"{self.pod_name}/{self.nonce}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> WorkerIdentity:
        """From ``POD_NAME`` and ``POD_UID``; outside Kubernetes the host name
        stands in for the pod and the pod UID, so restarts on one host still find their tasks."""
        env = os.environ if env is None else env
        host = socket.gethostname()
        pod_name = env.get("POD_NAME") or host
        return cls(
            pod_name=pod_name,
            pod_uid=env.get("POD_UID") or f"host:{pod_name}",
            nonce=secrets.token_hex(6),
        )


def requester() -> str:
    """Who cancels a task, when the caller does not say: ``user@host`` of this process."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # a container's uid without a passwd entry
        user = f"uid {os.getuid()}"
    return f"{user}@{socket.gethostname()}"
