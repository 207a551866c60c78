"""``kubetasks-operator``: run the operator with its liveness endpoint and metrics.

Environment: ``KUBETASKS_NAMESPACES`` (comma-separated; default: all namespaces),
``KUBETASKS_OPERATOR_PORT`` (liveness at /healthz, default 8080), ``KUBETASKS_METRICS_PORT``
(Prometheus /metrics, default 9090), ``KUBETASKS_OPERATOR_LISTEN`` (``false`` to poll only, e.g.
behind PgBouncer's transaction pooling), ``KUBETASKS_LOG_LEVEL``.
"""

from __future__ import annotations

import os
import sys

import kopf
from prometheus_client import start_http_server

from kubetasks.logs import setup_logging


def main() -> int:
    setup_logging(os.environ.get("KUBETASKS_LOG_LEVEL", "INFO"))
    import kubetasks_operator  # noqa: F401 - registers the handlers

    namespaces = [n.strip() for n in os.environ.get("KUBETASKS_NAMESPACES", "").split(",") if n.strip()]
    port = int(os.environ.get("KUBETASKS_OPERATOR_PORT", "8080"))
    start_http_server(int(os.environ.get("KUBETASKS_METRICS_PORT", "9090")))
    kopf.run(
        standalone=True,
        clusterwide=not namespaces,
        namespaces=namespaces,
        liveness_endpoint=f"http://0.0.0.0:{port}/healthz",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
