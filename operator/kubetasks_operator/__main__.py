"""``kubetasks-operator``: run the operator with its liveness endpoint and metrics.

Configured from the environment, read once (``settings.OperatorSettings``).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from kubetasks.exceptions import ConfigurationError
from kubetasks_operator import missing_extra

if TYPE_CHECKING:
    from kubetasks_operator.settings import OperatorSettings


def main() -> int:
    missing = missing_extra()
    if missing:
        print(f"kubetasks-operator: {', '.join(missing)} not installed; install the operator with "
              "pip install 'kubetasks[operator]'", file=sys.stderr)
        return 2
    from kubetasks_operator.settings import OperatorSettings

    try:
        settings = OperatorSettings.from_env()
    except ConfigurationError as error:
        print(f"kubetasks-operator: {error}", file=sys.stderr)
        return 2
    return run(settings)


def run(settings: OperatorSettings) -> int:
    import logging
    import os

    import kopf
    from prometheus_client import start_http_server

    from kubetasks.logs import RedactSecrets, setup_logging

    setup_logging(settings.log_level)
    # kopf posts its per-object log lines as Events, through a handler of its own: mask them
    # before that handler formats them.
    logging.getLogger("kopf.objects").addFilter(RedactSecrets())
    # A database that does not answer is reported within seconds, with libpq's reason.
    os.environ.setdefault("PGCONNECT_TIMEOUT", "5")
    start_http_server(settings.metrics_port)
    # With a peering object the replicas elect a leader (kubetasks_operator.peering); the
    # others stay paused until it is gone.
    kopf.run(
        standalone=not settings.peering,
        peering_name=settings.peering or None,
        clusterwide=not settings.namespaces,
        namespaces=settings.namespaces,
        liveness_endpoint=f"http://0.0.0.0:{settings.liveness_port}/healthz",
        memo=kopf.Memo(settings=settings),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
