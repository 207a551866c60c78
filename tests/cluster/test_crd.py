"""The TaskQueue CRD as users read it: every field described, and ``kubectl explain`` showing it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from localcluster.controlplane import ControlPlane
from localcluster.operator import REPO
from localcluster.polling import wait_until

pytestmark = [pytest.mark.cluster]


def schema_nodes(node: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every property (and array item) of an openAPIV3Schema, with its dotted path."""
    yield path, node
    for name, child in node.get("properties", {}).items():
        yield from schema_nodes(child, f"{path}.{name}")
    if "items" in node:
        yield from schema_nodes(node["items"], f"{path}[]")


def test_every_field_of_the_crd_has_a_description() -> None:
    crd = yaml.safe_load((REPO / "crds" / "taskqueue.yaml").read_text())
    [version] = crd["spec"]["versions"]
    nodes = dict(schema_nodes(version["schema"]["openAPIV3Schema"], "taskqueue"))
    assert len(nodes) > 60
    # The API server refuses a description of metadata: kubectl explain gives ObjectMeta's.
    undescribed = [path for path, node in nodes.items() if path != "taskqueue.metadata"
                   and not str(node.get("description", "")).strip()]
    assert undescribed == []
    # Defaults are stated in words, so ``kubectl explain`` tells them.
    undocumented_defaults = [path for path, node in nodes.items()
                             if "default" in node and node["default"] != {}
                             and "Default:" not in node["description"]]
    assert undocumented_defaults == []


@pytest.mark.usefixtures("local_kubelet", "crd")
@pytest.mark.parametrize("field", ["taskqueue", "taskqueue.spec", "taskqueue.spec.scaling",
                                   "taskqueue.spec.worker", "taskqueue.spec.lostTasks",
                                   "taskqueue.status.conditions"])
def test_kubectl_explain_describes_every_field(control_plane: ControlPlane, field: str) -> None:
    # The API server publishes a new CRD's OpenAPI a few seconds after it is Established.
    explained = wait_until(lambda: (r := control_plane.kubectl("explain", field, check=False))
                           .returncode == 0 and r.stdout, timeout=60, what=f"kubectl explain {field}")
    assert "FIELDS:" in explained
    assert "<empty>" not in explained
    if field == "taskqueue.spec.scaling":
        assert "maxReplicas" in explained and "Default: 10." in explained
