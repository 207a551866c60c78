"""Fixtures of the end-to-end tier: real images on a real node (or kind), the operator from
the chart, a namespace and a database per test.

- ``e2e``: the cluster of the chosen provider (``providers.py``), once per session;
- ``namespace``: a fresh namespace for one test, with the database Secret ``db``;
- ``db``: that test's database, as the tests reach it (``db.local``) and as pods do (``db.pods``);
- ``backend``: a kubetasks backend on that database, for enqueueing and reading results;
- ``cluster``: typed reads of the TaskQueue, its Deployment, pods and Events.
"""

from __future__ import annotations

import re
import sys
import uuid
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from localcluster.operator import Cluster
from localcluster.stack import Stack, real_node_stack

from kubetasks.backends import PostgresBackend
from kubetasks.store import Store

from .providers import kind_cluster, kind_unavailable_reason, provider_name

# The tests enqueue the example application's tasks under the names its image registers.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))


@pytest.fixture(scope="session")
def e2e(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("e2e")
    if provider_name() == "kind":
        if reason := kind_unavailable_reason():
            pytest.skip(f"kind provider not run: {reason}")
        with kind_cluster(workdir) as cluster:
            yield cluster
        return
    with real_node_stack(workdir) as cluster:
        yield cluster


@dataclass(frozen=True)
class Database:
    local: str
    pods: str


@pytest.fixture
def db(e2e: Stack) -> Database:
    local, pods = e2e.new_database()
    return Database(local=local, pods=pods)


@pytest.fixture
def namespace(request: pytest.FixtureRequest, e2e: Stack, db: Database) -> Iterator[str]:
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"{slug}-{uuid.uuid4().hex[:6]}"
    e2e.kubectl("create", "namespace", name)
    e2e.kubectl("create", "secret", "generic", "db", "-n", name, f"--from-literal=url={db.pods}")
    yield name
    e2e.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def cluster(e2e: Stack, namespace: str) -> Iterator[Cluster]:
    with e2e.api_client() as client:
        yield Cluster(client, namespace)


@pytest.fixture
def backend(db: Database) -> Iterator[PostgresBackend]:
    backend = PostgresBackend(Store(db.local))
    yield backend
    backend.close()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The host test starts and stops a node of its own: it runs before the session's node;
    the chaos test, the longest, runs last."""
    order = {"test_host.py": 0, "test_chaos.py": 2}
    items.sort(key=lambda item: order.get(item.path.name, 1))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failed scenario's report ends with the operator's log and the node's recent logs."""
    report: pytest.TestReport = yield
    e2e = getattr(item, "funcargs", {}).get("e2e")
    if report.failed and isinstance(e2e, Stack):
        report.sections.append(("operator", e2e.operator_diagnostics()[-6000:]))
        report.sections.append(("cluster logs", e2e.logs()[-6000:]))
    return report


