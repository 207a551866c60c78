"""A real node leaves the machine as it found it: sysctls, iptables, mounts, links, cgroups,
network namespaces and processes are compared before and after a node that ran a pod."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from localcluster.controlplane import ControlPlane
from localcluster.hoststate import HostState
from localcluster.images import build_images
from localcluster.node import BRIDGE, RealNode, undo_interrupted_run
from localcluster.polling import wait_until

from .providers import provider_name

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(provider_name() != "node", reason="the host is kind's business on the kind provider"),
]

POD = {
    "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "sleeper", "namespace": "default"},
    "spec": {"containers": [{
        "name": "pause", "image": "kubetasks/pause:3.10", "imagePullPolicy": "Never",
        "resources": {"limits": {"memory": "32Mi"}},
    }]},
}


def test_a_node_that_ran_a_pod_leaves_the_host_as_it_found_it(tmp_path: Path) -> None:
    pause = build_images()["pause"]
    # A node killed before its teardown (a cancelled run) is undone first, as RealNode.start does:
    # this test holds the node it starts to account, not one that ran before it.
    undo_interrupted_run()
    before = HostState.capture()
    with ControlPlane.start(workdir=tmp_path / "cp", real_nodes=True) as control_plane, \
            RealNode.start(control_plane, workdir=tmp_path / "node", images=[pause.archive]) as node:
        control_plane.kubectl("apply", "-f", "-", input=yaml.safe_dump(POD))
        wait_until(lambda: "Running" in control_plane.kubectl(
            "get", "pod", "sleeper", "-o", "jsonpath={.status.phase}").stdout,
            timeout=90, what="the pod running")
        during = HostState.capture()
        # The node did change the host while it ran: otherwise this test would prove nothing.
        assert BRIDGE in during.links
        assert any("kubepods" in cgroup for cgroup in during.cgroups)
        assert any(str(node.workdir) in mount for mount in during.mounts)
    after = HostState.capture()
    assert before.differences(after) == {}
