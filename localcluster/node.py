"""A real Kubernetes node on this machine: containerd, runc, the CNI bridge and the upstream kubelet.

It joins the loopback control plane of ``controlplane.py`` and runs real pods from images
imported into containerd (no registry): real cgroups and memory limits, volumes and
service-account tokens, probes, signals and restarts. Settings this kind of machine needs:

- containerd's CRI plugin with ``restrict_oom_score_adj`` (root here lacks CAP_SYS_RESOURCE
  and cannot lower a sandbox's oom_score_adj);
- a node address on a bridge that the node makes (the kubelet refuses loopback), which is
  also the pods' gateway: pods reach the host at that address and nothing else (no default
  route, no masquerade);
- no kube-proxy: a pod that talks to the API server uses ``hostNetwork`` with
  ``KUBERNETES_SERVICE_HOST``/``PORT`` pointing at the loopback API server (``api_env``).

Everything lives in one work directory; ``stop`` puts the host back as ``HostState`` found it::

    with RealNode.start(control_plane, workdir=tmp, images=[...]) as node:
        node.address  # where pods reach the host, e.g. 10.244.0.1
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import kubernetes
import yaml

from .controlplane import Component, ControlPlane, ControlPlaneError, cache_root, free_port, wait_for
from .hoststate import HostState, restore
from .pki import issue_from_ca

NODE_NAME = "kubetasks-node"
BRIDGE = "kt-node0"
SUBNET_PREFIX = "10.244.0"  # the pods' /24; the host is .1 on the bridge
CNI_BIN = Path("/usr/lib/cni")
PAUSE_IMAGE = "docker.io/kubetasks/pause:3.10"
log = logging.getLogger(__name__)
IN_USE = cache_root() / "node-in-use.json"  # the host's state before the running node
NEEDED_TOOLS = {  # command -> the Debian package that brings it
    "containerd": "containerd",
    "ctr": "containerd",
    "runc": "runc",
    "ip": "iproute2",
    "iptables": "iptables",
}


class NodeError(ControlPlaneError):
    """The node could not be set up; the message says what is missing or what failed."""


def check_host() -> None:
    """Refuse to start where a real node cannot run, naming what to install."""
    missing = [f"{tool} (apt-get install {package})" for tool, package in NEEDED_TOOLS.items()
               if shutil.which(tool) is None]
    if not (CNI_BIN / "bridge").exists():
        missing.append(f"{CNI_BIN}/bridge (apt-get install containernetworking-plugins)")
    if missing:
        raise NodeError("the real node needs: " + ", ".join(missing))
    if not Path("/sys/fs/cgroup/memory").is_dir() and not Path("/sys/fs/cgroup/cgroup.controllers").exists():
        raise NodeError("the real node needs cgroups (/sys/fs/cgroup has no memory controller)")


class RealNode:
    """containerd + the kubelet, registered as ``NODE_NAME`` with the control plane."""

    def __init__(self, control_plane: ControlPlane, *, workdir: Path) -> None:
        self.control_plane = control_plane
        self.workdir = workdir.resolve()
        self.address = f"{SUBNET_PREFIX}.1"
        self.subnet = f"{SUBNET_PREFIX}.0/24"
        self.socket = self.workdir / "containerd" / "containerd.sock"
        self.components: list[Component] = []
        self.before: HostState | None = None
        self.kubelet_port = free_port()

    @classmethod
    @contextmanager
    def start(
        cls, control_plane: ControlPlane, *, workdir: Path, images: Sequence[Path] = (),
        timeout: float = 120.0,
    ) -> Iterator[RealNode]:
        """Start a node with ``images`` (docker-archive tars) imported; undo it all on leaving."""
        check_host()
        workdir.mkdir(parents=True, exist_ok=True)
        node = cls(control_plane, workdir=workdir)
        try:
            node._start(images, deadline=time.monotonic() + timeout)
            yield node
        finally:
            node.stop()

    def _start(self, images: Sequence[Path], *, deadline: float) -> None:
        kubelet_binary = self.control_plane.binaries.require(self.control_plane.binaries.kubelet)
        undo_interrupted_run()
        self.before = HostState.capture()
        # Written first, so that a run killed before its teardown is undone by the next one.
        IN_USE.parent.mkdir(parents=True, exist_ok=True)
        IN_USE.write_text(json.dumps({"pid": os.getpid(), "workdir": str(self.workdir),
                                      "before": asdict(self.before)}))
        self._make_bridge()
        self._start_containerd(deadline)
        for archive in images:
            self.ctr("images", "import", str(archive), timeout=300)
        self._start_kubelet(kubelet_binary, deadline)

    # -- the pieces ------------------------------------------------------------------

    def _make_bridge(self) -> None:
        _run(["ip", "link", "add", BRIDGE, "type", "bridge"])
        _run(["ip", "addr", "add", f"{self.address}/24", "dev", BRIDGE])
        _run(["ip", "link", "set", BRIDGE, "up"])

    def _start_containerd(self, deadline: float) -> None:
        root = self.workdir / "containerd"
        (root / "cni" / "net.d").mkdir(parents=True, exist_ok=True)
        conflist = root / "cni" / "net.d" / "10-kubetasks.conflist"
        conflist.write_text(json.dumps(self._cni_config(), indent=1))
        config = root / "config.toml"
        config.write_text(_containerd_config(root))
        component = Component("containerd", ["containerd", "--config", str(config)],
                              log=self.workdir / "containerd.log")
        self.components.append(component)
        wait_for(component, "serving", deadline,
                 lambda: self.ctr("version", check=False).returncode == 0, error=NodeError)

    def _cni_config(self) -> dict[str, object]:
        return {
            "cniVersion": "0.4.0",
            "name": "kubetasks",
            "plugins": [{
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": self.subnet, "rangeStart": f"{SUBNET_PREFIX}.10",
                                 "gateway": self.address}]],
                    "dataDir": str(self.workdir / "containerd" / "cni" / "ipam"),
                },
            }],
        }

    def _start_kubelet(self, binary: Path, deadline: float) -> None:
        pki = self.control_plane.pki
        certs = self.workdir / "kubelet-pki"
        client = issue_from_ca(pki.ca, certs, "kubelet-client", common_name=f"system:node:{NODE_NAME}",
                               organization="system:nodes", client=True)
        serving = issue_from_ca(pki.ca, certs, "kubelet-serving", common_name=NODE_NAME,
                                server_ips=(self.address,))
        kubeconfig = self.workdir / "kubelet.kubeconfig"
        self.control_plane.write_kubeconfig(kubeconfig, client.cert, client.key)
        config = self.workdir / "kubelet-config.yaml"
        config.write_text(yaml.safe_dump(self._kubelet_config(serving.cert, serving.key)))
        (self.workdir / "resolv.conf").write_text("")  # no DNS here; pods get an empty resolver list
        argv = [
            str(binary),
            f"--config={config}",
            f"--kubeconfig={kubeconfig}",
            f"--root-dir={self.workdir / 'kubelet'}",
            f"--cert-dir={certs}",
            f"--hostname-override={NODE_NAME}",
            f"--node-ip={self.address}",
            "--v=1",
        ]
        component = Component("kubelet", argv, log=self.workdir / "kubelet.log")
        self.components.append(component)
        wait_for(component, "Ready", deadline, self._ready, error=NodeError)

    def _kubelet_config(self, cert: Path, key: Path) -> dict[str, object]:
        return {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": self.address,
            "port": self.kubelet_port,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": free_port(),
            "tlsCertFile": str(cert),
            "tlsPrivateKeyFile": str(key),
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True},
                "x509": {"clientCAFile": str(self.control_plane.pki.ca.cert)},
            },
            "authorization": {"mode": "Webhook"},
            "containerRuntimeEndpoint": f"unix://{self.socket}",
            "cgroupDriver": "cgroupfs",
            "failSwapOn": False,
            "resolvConf": str(self.workdir / "resolv.conf"),
            # The images were imported, not pulled: never collect them, never evict for disk.
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%",
                             "imagefs.available": "1%", "nodefs.inodesFree": "1%"},
            "serializeImagePulls": False,
            "nodeStatusUpdateFrequency": "2s",
            "syncFrequency": "5s",
            "fileCheckFrequency": "5s",
            "shutdownGracePeriod": "0s",
        }

    def _ready(self) -> bool:
        with self.control_plane.api_client() as client:
            node = kubernetes.client.CoreV1Api(client).read_node(NODE_NAME)
        return any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])

    # -- use -------------------------------------------------------------------------

    def ctr(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """``ctr`` against this node's containerd, in the namespace of Kubernetes' containers."""
        return subprocess.run(["ctr", "--address", str(self.socket), "--namespace", "k8s.io", *args],
                              capture_output=True, text=True, check=check, timeout=timeout)

    def api_env(self) -> list[dict[str, str]]:
        """Env for a hostNetwork pod to reach the loopback API server (there is no kube-proxy)."""
        host, port = self.control_plane.server.removeprefix("https://").rsplit(":", 1)
        return [{"name": "KUBERNETES_SERVICE_HOST", "value": host},
                {"name": "KUBERNETES_SERVICE_PORT", "value": port}]

    def logs(self) -> str:
        return "\n".join(component.tail(40) for component in self.components)

    # -- teardown --------------------------------------------------------------------

    def stop(self) -> None:
        """Stop the pods, the kubelet and containerd, and put the host back; safe to repeat."""
        if self.before is None:
            return
        with contextlib.suppress(Exception):
            self._delete_pods()
        kubelet = [c for c in self.components if c.name == "kubelet"]
        for component in kubelet:
            component.stop(grace=10)
        with contextlib.suppress(Exception):
            self._remove_containers()
        for component in reversed(self.components):
            component.stop(grace=10)
        self.components.clear()
        before, self.before = self.before, None
        restore(before, workdir=self.workdir, links=[BRIDGE])
        shutil.rmtree(self.workdir / "containerd", ignore_errors=True)
        IN_USE.unlink(missing_ok=True)
        if left := before.differences(HostState.capture()):
            # Something else may have run beside the node (an image build); tests/e2e/test_host.py
            # holds the strict check.
            log.warning("the host differs from before the node: %s", left)

    def _delete_pods(self) -> None:
        """Delete every pod on the node at once, and wait for the kubelet to tear them down."""
        with self.control_plane.api_client() as client:
            core = kubernetes.client.CoreV1Api(client)
            selector = f"spec.nodeName={NODE_NAME}"
            for pod in core.list_pod_for_all_namespaces(field_selector=selector).items:
                with contextlib.suppress(kubernetes.client.ApiException):
                    core.delete_namespaced_pod(pod.metadata.name, pod.metadata.namespace,
                                               grace_period_seconds=0)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and self._running_tasks():
            time.sleep(0.5)

    def _running_tasks(self) -> list[str]:
        out = self.ctr("tasks", "list", "--quiet", check=False).stdout
        return [line for line in out.splitlines() if line.strip()]

    def _remove_containers(self) -> None:
        for task in self._running_tasks():
            self.ctr("tasks", "kill", "--signal", "SIGKILL", task, check=False)
        time.sleep(0.5)
        for task in self._running_tasks():
            self.ctr("tasks", "delete", "--force", task, check=False)
        containers = self.ctr("containers", "list", "--quiet", check=False).stdout.split()
        for container in containers:
            self.ctr("containers", "delete", container, check=False)


def undo_interrupted_run() -> None:
    """Put the host back after a node whose process died before its teardown (SIGKILL, a crash)."""
    if not IN_USE.exists():
        return
    record = json.loads(IN_USE.read_text())
    if Path(f"/proc/{record['pid']}").exists():
        raise NodeError(f"a node of process {record['pid']} runs on this machine ({record['workdir']});"
                        " one node at a time")
    restore(HostState(**record["before"]), workdir=Path(record["workdir"]), links=[BRIDGE])
    IN_USE.unlink()


def _containerd_config(root: Path) -> str:
    return f"""version = 2
root = "{root / 'root'}"
state = "{root / 'state'}"

[grpc]
  address = "{root / 'containerd.sock'}"

[ttrpc]
  address = "{root / 'containerd.sock.ttrpc'}"

[debug]
  level = "warn"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN}"
    conf_dir = "{root / 'cni' / 'net.d'}"
"""


def _run(argv: list[str]) -> None:
    result = subprocess.run(argv, capture_output=True, text=True)
    if result.returncode != 0:
        raise NodeError(f"{' '.join(argv)} failed: {result.stderr.strip()}")
