"""A real Kubernetes control plane on loopback: etcd, kube-apiserver, kube-controller-manager.

The binaries come from the cache that ``localcluster/build-binaries.sh`` fills.
Everything else — certificates, data, logs, kubeconfig — lives in one directory
given by the caller, and every process is stopped (with its whole process group)
when the control plane stops::

    with ControlPlane.start(workdir=tmp) as cluster:
        core = kubernetes.client.CoreV1Api(cluster.api_client())
        core.list_namespace()
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import kubernetes
import yaml

from .pki import SERVICE_CLUSTER_IP_RANGE, Pki, create_pki, issue_from_ca
from .processes import spawn, terminate

BUILD_SCRIPT = Path(__file__).with_name("build-binaries.sh")
LOOPBACK = "127.0.0.1"

# The controllers a test cluster needs: workloads, garbage collection,
# namespaces and service accounts. Controllers that watch node health (node
# lifecycle, taint eviction) stay off: the local kubelet is the only node. So do
# the endpoints controllers: pod IPs are loopback addresses, which Endpoints refuse.
CONTROLLERS = (
    "deployment-controller",
    "replicaset-controller",
    "statefulset-controller",
    "job-controller",
    "cronjob-controller",
    "ttl-after-finished-controller",
    "garbage-collector-controller",
    "pod-garbage-collector-controller",
    "namespace-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "root-ca-certificate-publisher-controller",
    "clusterrole-aggregation-controller",
    "disruption-controller",
)

REAL_NODE_CONTROLLERS = ("node-lifecycle-controller",)


class ControlPlaneError(RuntimeError):
    """The control plane could not be started; the message says why and what to do."""


def cache_root() -> Path:
    """Where build-binaries.sh keeps its builds: $KUBETASKS_CACHE, else ~/.cache/kubetasks."""
    if explicit := os.environ.get("KUBETASKS_CACHE"):
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "kubetasks"


def pinned_versions(script: Path = BUILD_SCRIPT) -> dict[str, str]:
    """The versions pinned in build-binaries.sh, e.g. ``{"KUBERNETES_VERSION": "v1.33.13"}``."""
    return dict(re.findall(r"^([A-Z]+_VERSION)=(\S+)$", script.read_text(), flags=re.MULTILINE))


@dataclass(frozen=True, kw_only=True)
class Binaries:
    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path
    helm: Path
    kubelet: Path  # only the real node needs these two: see ``require``
    kube_scheduler: Path
    kubernetes_version: str

    @classmethod
    def from_cache(cls, root: Path | None = None) -> Binaries:
        """Locate the cached builds of the pinned versions, or say how to build them."""
        bin_root = (root or cache_root()) / "bin"
        versions = pinned_versions()
        kube = versions["KUBERNETES_VERSION"]

        def cached(name: str, version: str) -> Path:
            return bin_root / f"{name}-{version}" / name

        binaries = cls(
            etcd=cached("etcd", versions["ETCD_VERSION"]),
            kube_apiserver=cached("kube-apiserver", kube),
            kube_controller_manager=cached("kube-controller-manager", kube),
            helm=cached("helm", versions["HELM_VERSION"]),
            kubelet=cached("kubelet", kube),
            kube_scheduler=cached("kube-scheduler", kube),
            kubernetes_version=kube,
        )
        paths = (binaries.etcd, binaries.kube_apiserver, binaries.kube_controller_manager, binaries.helm)
        if missing := [str(path) for path in paths if not os.access(path, os.X_OK)]:
            raise ControlPlaneError(
                f"control-plane binaries are missing: {', '.join(missing)}; build them once with"
                " `bash localcluster/build-binaries.sh` from the repository root"
                " (KUBETASKS_CACHE selects another cache directory)"
            )
        return binaries

    def require(self, binary: Path) -> Path:
        """``binary`` (the kubelet's, the scheduler's), or an error that says how to build it."""
        if not os.access(binary, os.X_OK):
            raise ControlPlaneError(
                f"{binary.name} is missing: {binary}; build it with"
                " `bash localcluster/build-binaries.sh` from the repository root"
            )
        return binary


class Component:
    """One control-plane process, in its own process group, logging to a file."""

    def __init__(self, name: str, argv: Sequence[str], *, log: Path) -> None:
        self.name = name
        self.log = log
        self._log_file: IO[bytes] = log.open("ab")
        self.process = spawn(argv, output=self._log_file)

    def check_running(self) -> None:
        code = self.process.poll()
        if code is not None:
            raise ControlPlaneError(f"{self.name} exited with code {code} during start-up:\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        text = self.log.read_text(errors="replace").splitlines()[-lines:]
        return "\n".join(f"  {self.name}| {line}" for line in text)

    def stop(self, *, grace: float = 10.0) -> None:
        """SIGTERM the process group, then SIGKILL it if it is still there after ``grace`` seconds."""
        try:
            terminate(self.process, grace=grace)
        finally:
            self._log_file.close()


def wait_for(
    component: Component, state: str, deadline: float, probe: Callable[[], bool],
    *, error: type[ControlPlaneError] = ControlPlaneError,
) -> None:
    """Poll ``probe`` until it says ``state`` is reached; ``error`` if ``component`` dies or the
    deadline passes (exceptions from ``probe`` count as "not yet")."""
    while True:
        component.check_running()
        with contextlib.suppress(Exception):
            if probe():
                return
        if time.monotonic() > deadline:
            raise error(f"{component.name} was not {state} in time:\n{component.tail()}")
        time.sleep(0.2)


class ControlPlane:
    """A running etcd + kube-apiserver + kube-controller-manager on free loopback ports."""

    def __init__(self, *, workdir: Path, binaries: Binaries, real_nodes: bool = False) -> None:
        self.workdir = workdir
        self.controllers = CONTROLLERS + (REAL_NODE_CONTROLLERS if real_nodes else ())
        self.binaries = binaries
        self.components: list[Component] = []
        self.pki: Pki = create_pki(workdir / "pki")
        self.etcd_url = f"http://{LOOPBACK}:{free_port()}"
        self.server = f"https://{LOOPBACK}:{free_port()}"
        self.kubeconfig = workdir / "kubeconfig"
        self.controller_manager_kubeconfig = workdir / "controller-manager.kubeconfig"

    @classmethod
    @contextmanager
    def start(
        cls, *, workdir: Path, binaries: Binaries | None = None, timeout: float = 120.0,
        real_nodes: bool = False,
    ) -> Iterator[ControlPlane]:
        """Start a control plane in ``workdir`` and stop it on leaving the block, whatever happens.

        ``real_nodes`` adds what real kubelets need: the upstream kube-scheduler (the emulated
        kubelet binds pods itself) and the node lifecycle controller, which lifts the
        ``not-ready`` taint a kubelet registers with (and would evict the emulated node's pods).
        """
        workdir.mkdir(parents=True, exist_ok=True)
        cluster = cls(workdir=workdir, binaries=binaries or Binaries.from_cache(), real_nodes=real_nodes)
        try:
            cluster._start(deadline=time.monotonic() + timeout)
            if real_nodes:
                cluster._start_scheduler(deadline=time.monotonic() + timeout)
            yield cluster
        finally:
            cluster.stop()

    def _start(self, *, deadline: float) -> None:
        self.write_kubeconfig(self.kubeconfig, self.pki.admin.cert, self.pki.admin.key)
        self.write_kubeconfig(
            self.controller_manager_kubeconfig,
            self.pki.controller_manager.cert,
            self.pki.controller_manager.key,
        )
        etcd = self._launch("etcd", self._etcd_argv())
        self._wait_for(etcd, "healthy", deadline, self._etcd_healthy)
        apiserver = self._launch("kube-apiserver", self._apiserver_argv())
        self._wait_for(apiserver, "ready (/readyz)", deadline, self._apiserver_ready)
        controller_manager = self._launch("kube-controller-manager", self._controller_manager_argv())
        # The service-account controller creating `default` shows the controllers run;
        # pods cannot be admitted in a namespace before its `default` account exists.
        self._wait_for(
            controller_manager, "running controllers", deadline, self._default_service_account_exists
        )

    def _start_scheduler(self, *, deadline: float) -> None:
        binary = self.binaries.require(self.binaries.kube_scheduler)
        # RBAC's bootstrap policy binds this user name to the scheduler's role.
        cert = issue_from_ca(self.pki.ca, self.workdir / "pki", "scheduler",
                             common_name="system:kube-scheduler", client=True)
        kubeconfig = self.workdir / "scheduler.kubeconfig"
        self.write_kubeconfig(kubeconfig, cert.cert, cert.key)
        port = free_port()
        scheduler = self._launch("kube-scheduler", [
            str(binary), f"--kubeconfig={kubeconfig}", f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}", f"--bind-address={LOOPBACK}",
            f"--secure-port={port}", "--leader-elect=false", "--profiling=false",
        ])
        self._wait_for(scheduler, "serving", deadline, lambda: self._healthy(port))

    def _healthy(self, port: int) -> bool:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        with urllib.request.urlopen(f"https://{LOOPBACK}:{port}/healthz", timeout=2, context=context) as r:
            return bool(r.status == 200)

    def stop(self) -> None:
        """Stop every component, newest first; safe to call more than once."""
        while self.components:
            self.components.pop().stop()

    def api_client(self) -> kubernetes.client.ApiClient:
        """A fresh client of the ``kubernetes`` package, authenticated as the cluster admin."""
        return kubernetes.config.new_client_from_config(config_file=str(self.kubeconfig))

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run ``kubectl`` against this cluster and capture its output."""
        return subprocess.run(
            [
                "kubectl",
                f"--kubeconfig={self.kubeconfig}",
                f"--cache-dir={self.workdir / 'kubectl-cache'}",
                *args,
            ],
            input=input,
            capture_output=True,
            text=True,
            check=check,
            timeout=60,
        )

    def logs(self) -> str:
        """The last lines of every component's log, for a failure report."""
        return "\n".join(component.tail() for component in self.components)

    # -- processes -------------------------------------------------------------

    def _launch(self, name: str, argv: Sequence[str]) -> Component:
        component = Component(name, argv, log=self.workdir / f"{name}.log")
        self.components.append(component)
        return component

    def _wait_for(self, component: Component, state: str, deadline: float, probe: Callable[[], bool]) -> None:
        wait_for(component, state, deadline, probe)

    def _etcd_argv(self) -> list[str]:
        peer_url = f"http://{LOOPBACK}:{free_port()}"
        return [
            str(self.binaries.etcd),
            "--name=kubetasks",
            f"--data-dir={self.workdir / 'etcd'}",
            f"--listen-client-urls={self.etcd_url}",
            f"--advertise-client-urls={self.etcd_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=kubetasks={peer_url}",
            # The data is thrown away with the test session; durability only costs time.
            "--unsafe-no-fsync=true",
            "--log-level=warn",
        ]

    def _apiserver_argv(self) -> list[str]:
        pki = self.pki
        port = self.server.rsplit(":", 1)[1]
        return [
            str(self.binaries.kube_apiserver),
            f"--etcd-servers={self.etcd_url}",
            f"--bind-address={LOOPBACK}",
            f"--advertise-address={LOOPBACK}",
            f"--secure-port={port}",
            f"--cert-dir={self.workdir / 'apiserver'}",
            f"--tls-cert-file={pki.apiserver.cert}",
            f"--tls-private-key-file={pki.apiserver.key}",
            f"--client-ca-file={pki.ca.cert}",
            "--authorization-mode=Node,RBAC",
            "--anonymous-auth=false",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki.service_account_public_key}",
            f"--service-account-signing-key-file={pki.service_account_key}",
            f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
            "--allow-privileged=true",
            # Endpoints may not hold a loopback address, and nothing here routes the
            # `kubernetes` Service anyway: leave its endpoints alone.
            "--endpoint-reconciler-type=none",
            # `kubectl logs` reaches the local kubelet at the node's InternalIP.
            "--kubelet-preferred-address-types=InternalIP",
            f"--kubelet-client-certificate={pki.kubelet_client.cert}",
            f"--kubelet-client-key={pki.kubelet_client.key}",
            "--profiling=false",
        ]

    def _controller_manager_argv(self) -> list[str]:
        return [
            str(self.binaries.kube_controller_manager),
            f"--kubeconfig={self.controller_manager_kubeconfig}",
            f"--bind-address={LOOPBACK}",
            f"--secure-port={free_port()}",
            f"--cert-dir={self.workdir / 'controller-manager'}",
            "--leader-elect=false",
            f"--controllers={','.join(self.controllers)}",
            # Each controller acts as its own service account, as in a real cluster,
            # so RBAC applies to the controllers as well.
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={self.pki.service_account_key}",
            f"--root-ca-file={self.pki.ca.cert}",
            "--profiling=false",
        ]

    # -- readiness -------------------------------------------------------------

    def _etcd_healthy(self) -> bool:
        with urllib.request.urlopen(f"{self.etcd_url}/health", timeout=2) as response:
            return bool(json.load(response).get("health") == "true")

    def _apiserver_ready(self) -> bool:
        context = ssl.create_default_context(cafile=str(self.pki.ca.cert))
        context.load_cert_chain(str(self.pki.admin.cert), str(self.pki.admin.key))
        try:
            with urllib.request.urlopen(f"{self.server}/readyz", timeout=2, context=context) as response:
                return bool(response.status == 200)
        except urllib.error.HTTPError:
            return False

    def _default_service_account_exists(self) -> bool:
        with self.api_client() as client:
            kubernetes.client.CoreV1Api(client).read_namespaced_service_account("default", "default")
        return True

    def write_kubeconfig(self, path: Path, cert: Path, key: Path) -> None:
        config: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "kubetasks",
                    "cluster": {"server": self.server, "certificate-authority": str(self.pki.ca.cert)},
                }
            ],
            "users": [
                {"name": "kubetasks", "user": {"client-certificate": str(cert), "client-key": str(key)}}
            ],
            "contexts": [{"name": "kubetasks", "context": {"cluster": "kubetasks", "user": "kubetasks"}}],
            "current-context": "kubetasks",
        }
        path.write_text(yaml.safe_dump(config, sort_keys=False))


def free_port() -> int:
    """A TCP port free on loopback right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])
