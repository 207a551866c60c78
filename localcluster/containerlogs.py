"""The local kubelet's HTTPS endpoint, so that ``kubectl logs [-f]`` works against the test cluster.

The API server serves ``pods/log`` by calling the pod's kubelet at
``https://<node InternalIP>:<daemonEndpoints.kubeletEndpoint.Port>/containerLogs/<ns>/<pod>/<container>``.
This server answers that path from the container's log file. It listens on
loopback only and serves nothing else.
"""

from __future__ import annotations

import http.server
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path

from .pki import create_serving_cert

LogPath = Callable[[str, str, str], Path]
IsRunning = Callable[[str, str], bool]


class ContainerLogServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, *, host: str, log_path: LogPath, is_running: IsRunning, tls_dir: Path) -> None:
        super().__init__((host, 0), _Handler)
        self.log_path = log_path
        self.is_running = is_running
        self.stopping = threading.Event()
        cert = create_serving_cert(tls_dir, common_name="local-kubelet", ip=host)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(cert.cert), str(cert.key))
        self.socket = context.wrap_socket(self.socket, server_side=True)
        self._thread = threading.Thread(target=self.serve_forever, name="local-kubelet-logs", daemon=True)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self.shutdown()
        self.server_close()


class _Handler(http.server.BaseHTTPRequestHandler):
    server: ContainerLogServer
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        parts = url.path.strip("/").split("/")
        if len(parts) != 4 or parts[0] != "containerLogs":
            self.send_error(404, "the local kubelet serves /containerLogs/<namespace>/<pod>/<container> only")
            return
        namespace, pod, container = parts[1:]
        path = self.server.log_path(namespace, pod, container)
        if not path.exists():
            self.send_error(404, f"no log for container {container!r} of pod {namespace}/{pod}")
            return
        query = {key: values[-1] for key, values in urllib.parse.parse_qs(url.query).items()}
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            self._stream(
                path, namespace, pod, tail=query.get("tailLines"), follow=query.get("follow") == "true"
            )
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client went away, e.g. `kubectl logs -f` was stopped

    def _stream(self, path: Path, namespace: str, pod: str, *, tail: str | None, follow: bool) -> None:
        with path.open("rb") as log:
            data = log.read()
            if tail is not None:
                data = b"".join(data.splitlines(keepends=True)[-int(tail) :]) if int(tail) else b""
            self._chunk(data)
            while follow and not self.server.stopping.is_set():
                if more := log.read():
                    self._chunk(more)
                elif not self.server.is_running(namespace, pod):
                    break
                else:
                    time.sleep(0.2)
        self.wfile.write(b"0\r\n\r\n")  # the last, empty chunk ends the response

    def _chunk(self, data: bytes) -> None:
        if data:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

    def log_message(self, format: str, *args: object) -> None:
        pass
