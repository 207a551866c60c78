"""``/healthz``, ``/readyz`` and ``/metrics`` on one port, served from a thread.

The server runs beside the event loop, not on it, so that a loop blocked by a misbehaving
async task is reported dead instead of simply not answering.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

log = logging.getLogger(__name__)


@dataclass
class HealthState:
    """What the probes report, updated by the worker (plain attribute writes are atomic)."""

    liveness_timeout: float
    last_loop_at: float = field(default_factory=time.monotonic)
    database_ok: bool = False
    draining: bool = False

    def loop_turned(self) -> None:
        self.last_loop_at = time.monotonic()

    def alive(self, now: float) -> tuple[bool, str]:
        idle = now - self.last_loop_at
        if idle > self.liveness_timeout:
            return False, f"claim loop stuck for {idle:.0f} s (limit {self.liveness_timeout:g} s)"
        return True, "ok"

    def ready(self) -> tuple[bool, str]:
        if self.draining:
            return False, "draining: stopping after SIGTERM"
        if not self.database_ok:
            return False, "database unreachable"
        return True, "ok"


class HealthServer:
    """``with HealthServer(...) as server: server.port`` — the port is the bound one, so 0 works."""

    def __init__(self, host: str, port: int, health: HealthState,
                 registry: CollectorRegistry) -> None:
        handler = type("Handler", (_Handler,), {"health": health, "registry": registry})
        server = _IPv6Server if ":" in host else _Server
        self._server = server((host, port), handler)
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="kubetasks-health", daemon=True)

    def __enter__(self) -> HealthServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a probe left hanging must not hold the worker's exit


class _IPv6Server(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    health: HealthState
    registry: CollectorRegistry

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._send(200, generate_latest(self.registry), CONTENT_TYPE_LATEST)
        elif path in ("/healthz", "/livez"):
            ok, reason = self.health.alive(time.monotonic())
            self._send(200 if ok else 503, reason.encode() + b"\n")
        elif path == "/readyz":
            ok, reason = self.health.ready()
            self._send(200 if ok else 503, reason.encode() + b"\n")
        else:
            self._send(404, b"not found: try /healthz, /readyz or /metrics\n")

    def _send(self, status: int, body: bytes, content_type: str = "text/plain") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        # Probes hit these every few seconds; keep them out of the worker's log unless asked.
        log.debug("health request: " + format, *args)
