"""``kubetasks-operator``: run the operator with its liveness endpoint and metrics.

Configured from the environment, read once (``settings.OperatorSettings``).
"""

from __future__ import annotations

import sys

import kopf
from prometheus_client import start_http_server

from kubetasks.exceptions import ConfigurationError
from kubetasks.logs import setup_logging
from kubetasks_operator.settings import OperatorSettings


def main() -> int:
    try:
        settings = OperatorSettings.from_env()
    except ConfigurationError as error:
        print(f"kubetasks-operator: {error}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level)
    import kubetasks_operator  # noqa: F401 - registers the handlers

    start_http_server(settings.metrics_port)
    kopf.run(
        standalone=True,
        clusterwide=not settings.namespaces,
        namespaces=settings.namespaces,
        liveness_endpoint=f"http://0.0.0.0:{settings.liveness_port}/healthz",
        memo=kopf.Memo(settings=settings),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
