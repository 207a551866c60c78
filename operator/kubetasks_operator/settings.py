"""The operator's configuration, read once from the environment into a frozen value.

Every bad value is refused with the variable that held it and what would be accepted.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from kubetasks.parsing import from_env, parse_bool, parse_names, parse_port


@dataclass(frozen=True, kw_only=True)
class OperatorSettings:
    """``KUBETASKS_NAMESPACES`` (comma-separated; empty: every namespace),
    ``KUBETASKS_OPERATOR_PORT`` (liveness at /healthz), ``KUBETASKS_METRICS_PORT`` (Prometheus
    /metrics), ``KUBETASKS_OPERATOR_LISTEN`` (false to poll only, e.g. behind PgBouncer's
    transaction pooling, where LISTEN cannot work), ``KUBETASKS_LOG_LEVEL``, and for more than one
    replica ``KUBETASKS_PEERING`` (the kopf peering object the replicas elect their leader in;
    empty: one replica, no election) with ``KUBETASKS_PEERING_LIFETIME`` (seconds after which a
    leader that stopped renewing, e.g. killed, is replaced)."""

    namespaces: tuple[str, ...] = ()
    liveness_port: int = 8080
    metrics_port: int = 9090
    listen: bool = True
    log_level: str = "INFO"
    peering: str = ""
    peering_lifetime: int = 30

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> OperatorSettings:
        env = os.environ if env is None else env
        return cls(
            namespaces=parse_names(env.get("KUBETASKS_NAMESPACES", "")),
            liveness_port=from_env(env, "KUBETASKS_OPERATOR_PORT", parse_port, cls.liveness_port),
            metrics_port=from_env(env, "KUBETASKS_METRICS_PORT", parse_port, cls.metrics_port),
            listen=from_env(env, "KUBETASKS_OPERATOR_LISTEN", parse_bool, cls.listen),
            log_level=env.get("KUBETASKS_LOG_LEVEL") or cls.log_level,
            peering=from_env(env, "KUBETASKS_PEERING", parse_object_name, cls.peering),
            peering_lifetime=from_env(env, "KUBETASKS_PEERING_LIFETIME", parse_lifetime,
                                      cls.peering_lifetime),
        )


def parse_object_name(text: str) -> str:
    """A Kubernetes object name (RFC 1123 subdomain), as the peering object's must be."""
    if len(text) > 253 or not re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", text):
        raise ValueError("use a Kubernetes object name: lowercase letters, digits, '-' and '.'")
    return text


def parse_lifetime(text: str) -> int:
    """Whole seconds from 10 (a replica renews a few seconds before its lifetime ends) to 600."""
    value = int(text) if text.strip().isdigit() else -1
    if not 10 <= value <= 600:
        raise ValueError("use whole seconds from 10 to 600")
    return value
