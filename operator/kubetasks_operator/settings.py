"""The operator's configuration, read once from the environment into a frozen value.

Every bad value is refused with the variable that held it and what would be accepted.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from kubetasks.parsing import from_env, parse_bool, parse_names, parse_port


@dataclass(frozen=True, kw_only=True)
class OperatorSettings:
    """``KUBETASKS_NAMESPACES`` (comma-separated; empty: every namespace),
    ``KUBETASKS_OPERATOR_PORT`` (liveness at /healthz), ``KUBETASKS_METRICS_PORT`` (Prometheus
    /metrics), ``KUBETASKS_OPERATOR_LISTEN`` (false to poll only, e.g. behind PgBouncer's
    transaction pooling, where LISTEN cannot work) and ``KUBETASKS_LOG_LEVEL``."""

    namespaces: tuple[str, ...] = ()
    liveness_port: int = 8080
    metrics_port: int = 9090
    listen: bool = True
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> OperatorSettings:
        env = os.environ if env is None else env
        return cls(
            namespaces=parse_names(env.get("KUBETASKS_NAMESPACES", "")),
            liveness_port=from_env(env, "KUBETASKS_OPERATOR_PORT", parse_port, cls.liveness_port),
            metrics_port=from_env(env, "KUBETASKS_METRICS_PORT", parse_port, cls.metrics_port),
            listen=from_env(env, "KUBETASKS_OPERATOR_LISTEN", parse_bool, cls.listen),
            log_level=env.get("KUBETASKS_LOG_LEVEL") or cls.log_level,
        )
