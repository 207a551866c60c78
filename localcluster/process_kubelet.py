"""A local kubelet for tests: pods of a real API server run as processes on this machine.

There is no scheduler and no container runtime in the test cluster. This node
takes their place for the namespaces it serves:

- it registers a Node that stays Ready (status and Lease renewed), without taints;
- it binds pending pods that no node has yet to itself (the Binding subresource);
- it starts each container as a local process: ``command`` + ``args``, or the
  entrypoint it was given for the container's image; environment from ``env``
  and ``envFrom`` (downward API, Secrets, ConfigMaps) on top of its own;
- it gives each pod its own loopback address (127.0.X.Y) as ``status.podIP``;
  processes share the host network, so a server in a pod listens on its pod IP;
- it reports phase, conditions and container statuses, restarts containers as
  ``restartPolicy`` says, runs readiness and liveness probes;
- on deletion it sends SIGTERM, SIGKILL after the grace period, then removes the
  pod object.

Each container's output goes to ``log_path(namespace, pod, container)``::

    with LocalKubelet(api_client, log_dir=tmp / "pods") as kubelet:
        ...  # create a Deployment; its pods run here
"""

from __future__ import annotations

import base64
import datetime
import itertools
import json
import logging
import os
import platform
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException

from .containerlogs import ContainerLogServer
from .pods import PodRun, Runtime, rfc3339_now

log = logging.getLogger(__name__)

HOST_IP = "127.0.0.1"
# The images of this project, for containers that give no command: what each image's
# entrypoint runs. Tests may add their own with LocalKubelet.add_entrypoint().
IMAGE_ENTRYPOINTS: Mapping[str, Sequence[str]] = {"kubetasks-worker": ["kubetasks", "worker"]}
MERGE_PATCH = "application/merge-patch+json"


class PodIPs:
    """Hands out 127.0.X.Y addresses, one per pod, never twice in a process."""

    _next = itertools.count(256 + 1)
    _lock = threading.Lock()

    @classmethod
    def allocate(cls) -> str:
        with cls._lock:
            while (n := next(cls._next)) % 256 in (0, 255):
                pass
        if n >= 256 * 256:
            raise RuntimeError("the local kubelet ran out of pod IPs in 127.0.0.0/16")
        return f"127.0.{n // 256}.{n % 256}"


class LocalKubelet:
    """A test node whose pods' containers are local processes. See the module docstring."""

    def __init__(
        self,
        api_client: kubernetes.client.ApiClient,
        *,
        log_dir: Path,
        node_name: str = "kubetasks-local",
        namespaces: Collection[str] | None = None,
        entrypoints: Mapping[str, Sequence[str]] | None = None,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        restart_backoff: tuple[float, float] = (1.0, 10.0),
        heartbeat_seconds: float = 10.0,
    ) -> None:
        """``namespaces``: None serves them all. ``env``: what pods inherit (default: this process's)."""
        self.node_name = node_name
        self.namespaces = frozenset(namespaces) if namespaces is not None else None
        self.entrypoints: dict[str, list[str]] = {k: list(v) for k, v in (entrypoints or {}).items()}
        self.log_dir = log_dir
        self.heartbeat_seconds = heartbeat_seconds
        self._core = kubernetes.client.CoreV1Api(api_client)
        self._leases = kubernetes.client.CoordinationV1Api(api_client)
        self._runtime = Runtime(
            entrypoints=self.entrypoints,
            inherited_env=dict(os.environ if env is None else env),
            read=self._read_data,
            cwd=cwd or Path.cwd(),
            host_ip=HOST_IP,
            log_path=self.log_path,
            backoff=restart_backoff,
        )
        self._seen: dict[str, dict[str, Any]] = {}  # uid -> latest pod object, written by the watch
        self._seen_lock = threading.Lock()
        self._runs: dict[str, PodRun] = {}  # uid -> run, only touched by the sync thread
        self._reported: dict[str, dict[str, Any]] = {}  # uid -> status last written
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._last_heartbeat = 0.0
        self._registered_at = rfc3339_now()
        self._log_server: ContainerLogServer | None = None

    def __enter__(self) -> LocalKubelet:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def add_entrypoint(self, image: str, argv: Sequence[str]) -> None:
        """Run containers of ``image`` (name without tag) that have no ``command`` as ``argv`` + args."""
        self.entrypoints[image] = list(argv)

    def log_path(self, namespace: str, pod: str, container: str) -> Path:
        return self.log_dir / namespace / pod / f"{container}.log"

    def pod_log(self, namespace: str, pod: str, container: str | None = None) -> str:
        """What a container has printed so far (the only container when ``container`` is None)."""
        if container is None:
            logs = sorted((self.log_dir / namespace / pod).glob("*.log"))
            return "".join(path.read_text(errors="replace") for path in logs)
        path = self.log_path(namespace, pod, container)
        return path.read_text(errors="replace") if path.exists() else ""

    def start(self) -> None:
        try:
            self._log_server = ContainerLogServer(
                host=HOST_IP,
                log_path=self.log_path,
                is_running=self._is_running,
                tls_dir=self.log_dir / ".tls",
            )
            self._log_server.start()
            self._register_node()
        except BaseException:
            self.stop()
            raise
        for target, name in ((self._watch_pods, "watch"), (self._sync_loop, "sync")):
            thread = threading.Thread(target=target, name=f"local-kubelet-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """Stop the loops and kill every process of every pod; the API objects stay as they are."""
        self._stopping.set()
        self._wake.set()
        # The watch thread ends by itself within its watch timeout; only the sync
        # thread, which starts processes, must be gone before they are killed.
        for thread in self._threads:
            if thread.name.endswith("sync"):
                thread.join(timeout=15)
        self._threads.clear()
        for run in self._runs.values():
            run.kill()
        self._runs.clear()
        if self._log_server is not None:
            self._log_server.stop()
            self._log_server = None

    # -- the node ----------------------------------------------------------------

    def _register_node(self) -> None:
        labels = {
            "kubernetes.io/hostname": self.node_name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": _arch(),
            "node.kubernetes.io/instance-type": "local",
        }
        try:
            self._core.create_node(
                {"apiVersion": "v1", "kind": "Node", "metadata": {"name": self.node_name, "labels": labels}},
                _preload_content=False,
            )
        except ApiException as error:
            if error.status != 409:
                raise
        # The API server taints a new node not-ready; no node controller is there to lift it.
        self._core.patch_node(
            self.node_name, {"spec": {"taints": None}}, _content_type=MERGE_PATCH, _preload_content=False
        )
        self._heartbeat()

    def _heartbeat(self) -> None:
        now = rfc3339_now()
        self._core.patch_node_status(
            self.node_name,
            {"status": self._node_status(now)},
            _content_type=MERGE_PATCH,
            _preload_content=False,
        )
        lease = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.node_name, "namespace": "kube-node-lease"},
            "spec": {
                "holderIdentity": self.node_name,
                "leaseDurationSeconds": 40,
                "renewTime": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            },
        }
        try:
            self._leases.patch_namespaced_lease(
                self.node_name, "kube-node-lease", lease, _content_type=MERGE_PATCH, _preload_content=False
            )
        except ApiException as error:
            if error.status != 404:
                raise
            self._leases.create_namespaced_lease("kube-node-lease", lease, _preload_content=False)
        self._last_heartbeat = time.monotonic()

    def _node_status(self, now: str) -> dict[str, Any]:
        capacity = {"cpu": str(os.cpu_count() or 1), "memory": f"{_memory_kib()}Ki", "pods": "110"}

        def condition(kind: str, status: str, reason: str, message: str) -> dict[str, str]:
            return {
                "type": kind,
                "status": status,
                "reason": reason,
                "message": message,
                "lastHeartbeatTime": now,
                "lastTransitionTime": self._registered_at,
            }

        return {
            "capacity": capacity,
            "allocatable": capacity,
            "conditions": [
                condition("Ready", "True", "KubeletReady", "local kubelet is posting ready status"),
                condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "no memory pressure"),
                condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "no disk pressure"),
                condition("PIDPressure", "False", "KubeletHasSufficientPID", "no PID pressure"),
            ],
            "addresses": [
                {"type": "InternalIP", "address": HOST_IP},
                {"type": "Hostname", "address": self.node_name},
            ],
            "daemonEndpoints": {
                "kubeletEndpoint": {"Port": self._log_server.port if self._log_server else 0}
            },
            "nodeInfo": {
                "machineID": "local",
                "systemUUID": "local",
                "bootID": "local",
                "kernelVersion": platform.release(),
                "osImage": platform.platform(),
                "containerRuntimeVersion": "local://processes",
                "kubeletVersion": "v1.33.0-local",
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": _arch(),
            },
        }

    # -- watching pods ------------------------------------------------------------

    def _watch_pods(self) -> None:
        """List, then watch from the listed version; list again when the watch expires."""
        while not self._stopping.is_set():
            try:
                listed = _json(self._core.list_pod_for_all_namespaces(_preload_content=False))
                with self._seen_lock:
                    self._seen = {pod["metadata"]["uid"]: pod for pod in listed["items"] if self._serves(pod)}
                self._wake.set()
                for event in self._pod_events(listed["metadata"]["resourceVersion"]):
                    self._on_event(event)
            except Exception:
                if not self._stopping.is_set():
                    log.debug("local kubelet: pod watch failed; listing again", exc_info=True)
                    time.sleep(1)

    def _pod_events(self, resource_version: str) -> Iterator[dict[str, Any]]:
        while not self._stopping.is_set():
            watch = kubernetes.watch.Watch()
            # Short server-side timeouts let the thread notice stop() promptly.
            for event in watch.stream(
                self._core.list_pod_for_all_namespaces,
                resource_version=resource_version,
                allow_watch_bookmarks=True,
                timeout_seconds=5,
                deserialize=False,
            ):
                if event["type"] == "ERROR":
                    return  # typically 410 Gone: list again
                resource_version = event["object"]["metadata"]["resourceVersion"]
                if event["type"] != "BOOKMARK":
                    yield event
                if self._stopping.is_set():
                    return

    def _on_event(self, event: dict[str, Any]) -> None:
        pod = event["object"]
        if not self._serves(pod):
            return
        uid = pod["metadata"]["uid"]
        with self._seen_lock:
            if event["type"] == "DELETED":
                self._seen.pop(uid, None)
            else:
                self._seen[uid] = pod
        self._wake.set()

    def _serves(self, pod: dict[str, Any]) -> bool:
        node = pod["spec"].get("nodeName")
        if node and node != self.node_name:
            return False
        return self.namespaces is None or pod["metadata"]["namespace"] in self.namespaces

    # -- the sync loop --------------------------------------------------------------

    def _sync_loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(timeout=0.2)
            self._wake.clear()
            if self._stopping.is_set():
                return
            try:
                self._sync_once()
                if time.monotonic() - self._last_heartbeat >= self.heartbeat_seconds:
                    self._heartbeat()
            except Exception:
                log.warning("local kubelet: sync failed", exc_info=True)
                time.sleep(0.5)

    def _sync_once(self) -> None:
        with self._seen_lock:
            seen = dict(self._seen)
        now = time.monotonic()
        for uid in [uid for uid in self._runs if uid not in seen]:
            # Gone from the API without us (force-deleted, or its namespace): kill at once.
            self._runs.pop(uid).kill()
            self._reported.pop(uid, None)
        for uid, pod in seen.items():
            try:
                self._sync_pod(uid, pod, now)
            except Exception:
                # One pod the API refuses to update must not hold up the others.
                metadata = pod["metadata"]
                log.warning(
                    "local kubelet: sync of %s/%s failed",
                    metadata["namespace"],
                    metadata["name"],
                    exc_info=True,
                )

    def _sync_pod(self, uid: str, pod: dict[str, Any], now: float) -> None:
        if not pod["spec"].get("nodeName"):
            if not pod["metadata"].get("deletionTimestamp"):
                self._bind(pod)
            return
        run = self._runs.get(uid)
        if run is None:
            if pod["metadata"].get("deletionTimestamp"):
                self._remove(pod)
                return
            run = self._runs[uid] = PodRun(pod, pod_ip=PodIPs.allocate(), runtime=self._runtime)
        run.pod = pod
        run.sync(now)
        if run.deleting and run.stopped:
            self._remove(pod)
            del self._runs[uid]
            self._reported.pop(uid, None)
        else:
            self._report(run)

    def _is_running(self, namespace: str, name: str) -> bool:
        runs = list(self._runs.values())
        return any(run.namespace == namespace and run.name == name and not run.stopped for run in runs)

    def _bind(self, pod: dict[str, Any]) -> None:
        metadata = pod["metadata"]
        binding = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": metadata["name"], "uid": metadata["uid"]},
            "target": {"apiVersion": "v1", "kind": "Node", "name": self.node_name},
        }
        try:
            self._core.create_namespaced_pod_binding(
                metadata["name"], metadata["namespace"], binding, _preload_content=False
            )
        except ApiException as error:
            if error.status not in (404, 409):  # gone, or bound meanwhile
                raise

    def _report(self, run: PodRun) -> None:
        status = run.status()
        if self._reported.get(run.uid) == status:
            return
        try:
            self._core.patch_namespaced_pod_status(
                run.name,
                run.namespace,
                {"metadata": {"uid": run.uid}, "status": status},
                _content_type=MERGE_PATCH,
                _preload_content=False,
            )
        except ApiException as error:
            if error.status not in (404, 409):
                raise
        self._reported[run.uid] = status

    def _remove(self, pod: dict[str, Any]) -> None:
        """Delete a pod whose processes are gone, at once (grace period 0), as the kubelet does."""
        metadata = pod["metadata"]
        try:
            self._core.delete_namespaced_pod(
                metadata["name"],
                metadata["namespace"],
                body={"gracePeriodSeconds": 0, "preconditions": {"uid": metadata["uid"]}},
                _preload_content=False,
            )
        except ApiException as error:
            if error.status not in (404, 409):
                raise

    def _read_data(self, kind: str, namespace: str, name: str) -> dict[str, str] | None:
        read: Callable[..., Any] = (
            self._core.read_namespaced_secret if kind == "Secret" else self._core.read_namespaced_config_map
        )
        try:
            obj = _json(read(name, namespace, _preload_content=False))
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        if kind == "Secret":
            return _decoded(obj.get("data") or {})
        return {**_decoded(obj.get("binaryData") or {}), **(obj.get("data") or {})}


def _decoded(data: dict[str, str]) -> dict[str, str]:
    return {key: base64.b64decode(value).decode(errors="replace") for key, value in data.items()}


def _json(response: Any) -> dict[str, Any]:
    return dict(json.loads(response.data))


def _arch() -> str:
    machine = platform.machine().lower()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def _memory_kib() -> int:
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 4 * 1024 * 1024
