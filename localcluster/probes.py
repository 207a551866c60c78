"""Readiness and liveness probes of a container running as a local process.

A ``Prober`` thread runs one probe on its schedule (``initialDelaySeconds``,
``periodSeconds``, ``timeoutSeconds``, ``successThreshold``, ``failureThreshold``)
and keeps a verdict the kubelet reads: ``healthy`` is None until the probe has
decided, then True or False.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import subprocess
import threading
from collections.abc import Mapping
from typing import Any

from .podenv import ContainerConfigError

Probe = dict[str, Any]


class Prober(threading.Thread):
    def __init__(
        self, kind: str, probe: Probe, *, pod_ip: str, ports: Mapping[str, int], env: Mapping[str, str]
    ) -> None:
        super().__init__(name=f"{kind}-probe", daemon=True)
        self.kind = kind
        self.probe = probe
        self.pod_ip = pod_ip
        self.ports = ports
        self.env = env
        if not any(key in probe for key in ("httpGet", "tcpSocket", "exec")):
            raise ContainerConfigError(f"{kind} probe {sorted(probe)} is not supported by the local kubelet")
        self.healthy: bool | None = None
        self._stopped = threading.Event()

    def stop(self) -> None:
        self._stopped.set()

    def run(self) -> None:
        period = self.probe.get("periodSeconds", 10)
        successes_needed = self.probe.get("successThreshold", 1)
        failures_allowed = self.probe.get("failureThreshold", 3)
        successes = failures = 0
        if self._stopped.wait(self.probe.get("initialDelaySeconds", 0)):
            return
        while not self._stopped.is_set():
            if self.check():
                successes, failures = successes + 1, 0
                if successes >= successes_needed:
                    self.healthy = True
            else:
                successes, failures = 0, failures + 1
                if failures >= failures_allowed:
                    self.healthy = False
            self._stopped.wait(period)

    def check(self) -> bool:
        """Run the probe once: True when it succeeds within ``timeoutSeconds``."""
        timeout = float(self.probe.get("timeoutSeconds", 1))
        try:
            if action := self.probe.get("httpGet"):
                return self._http_get(action, timeout)
            if action := self.probe.get("tcpSocket"):
                host = action.get("host") or self.pod_ip
                with socket.create_connection((host, self._port(action["port"])), timeout=timeout):
                    return True
            if action := self.probe.get("exec"):
                result = subprocess.run(
                    action["command"], env=dict(self.env), capture_output=True, timeout=timeout, check=False
                )
                return result.returncode == 0
        except (OSError, subprocess.TimeoutExpired, http.client.HTTPException):
            pass
        return False

    def _http_get(self, action: dict[str, Any], timeout: float) -> bool:
        host = action.get("host") or self.pod_ip
        port = self._port(action["port"])
        if action.get("scheme", "HTTP").upper() == "HTTPS":
            connection: http.client.HTTPConnection = http.client.HTTPSConnection(
                host,
                port,
                timeout=timeout,
                context=ssl._create_unverified_context(),
            )
        else:
            connection = http.client.HTTPConnection(host, port, timeout=timeout)
        try:
            headers = {h["name"]: h["value"] for h in action.get("httpHeaders") or []}
            connection.request(
                "GET", action.get("path", "/"), headers={"User-Agent": "kube-probe/1.33", **headers}
            )
            return 200 <= connection.getresponse().status < 400
        finally:
            connection.close()

    def _port(self, port: int | str) -> int:
        if isinstance(port, int):
            return port
        if port.isdigit():
            return int(port)
        if port in self.ports:
            return self.ports[port]
        raise OSError(f"no container port named {port!r}")
