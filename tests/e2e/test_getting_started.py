"""The README's "Getting started on your cluster", run as written on the real node.

The commands are read from the README's block (between ``getting-started:begin`` and ``:end``),
so the two cannot drift, and run by bash with ``set -e``: every command must succeed. Swapped in
is only what this node differs in from a cluster with a registry: ``docker build -t NAME`` tags
the image that ``localcluster`` built from the same Dockerfile as NAME on the node (``docker
push`` then has nothing to do), ``helm install`` gets the node's network values (no kube-proxy
here), and ``DATABASE_URL`` is a fresh, empty database that the chart's hook Job migrates.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from localcluster.images import APP, OPERATOR, WORKER
from localcluster.stack import OPERATOR_NAMESPACE, RELEASE, REPO, Stack

from kubetasks.migrations import available

from .providers import provider_name

# Images built on a cold cache, then the chart, the migration and 400 tasks.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(2400)]

BLOCK = re.compile(r"<!-- getting-started:begin -->\s*```sh\n(.*?)```\s*<!-- getting-started:end -->",
                   re.DOTALL)
BUILT_FROM = {image.dockerfile: image.name for image in (OPERATOR, WORKER, APP)}
NAMESPACE = "shop"  # the README's


def readme_block() -> str:
    found = BLOCK.search((REPO / "README.md").read_text())
    assert found, "README.md has no getting-started block"
    return found[1]


def commands(block: str) -> list[list[str]]:
    """The block's ``docker build`` commands, continuation lines joined, as words."""
    joined = re.sub(r"\\\n\s*", " ", block)
    return [shlex.split(line) for line in joined.splitlines() if line.startswith("docker build")]


def build_tags(block: str, registry: str) -> dict[str, str]:
    """Image NAME -> the image localcluster built from the same Dockerfile."""
    tags = {}
    for words in commands(block):
        dockerfile = words[words.index("-f") + 1] if "-f" in words else "Dockerfile"
        assert dockerfile in BUILT_FROM, f"README builds {dockerfile}, which localcluster does not"
        tags[words[words.index("-t") + 1].replace("$REGISTRY", registry)] = BUILT_FROM[dockerfile]
    return tags


def setting(block: str, name: str) -> str:
    found = re.search(rf"^export {name}=(\S+)", block, re.MULTILINE)
    assert found, f"the README's block sets no {name}"
    return found[1]


@pytest.fixture
def empty_database(e2e: Stack) -> Iterator[tuple[str, str]]:
    """A database without the schema: (URL for the test, URL for pods)."""
    name = f"start_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(e2e.admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield e2e.admin_dsn.rsplit("/", 1)[0] + f"/{name}", e2e.pod_dsn(name)


@pytest.fixture
def readme_release(e2e: Stack) -> Iterator[None]:
    """The session's operator release makes way for the README's, and comes back afterwards."""
    e2e.helm_run("uninstall", RELEASE, "--namespace", OPERATOR_NAMESPACE, "--wait")
    yield
    e2e.kubectl("delete", "namespace", NAMESPACE, "--wait=true", "--timeout=120s", check=False)
    e2e.helm_run("uninstall", RELEASE, "--namespace", OPERATOR_NAMESPACE, "--wait")
    e2e.install_operator()


def image_builder(e2e: Stack, block: str) -> str:
    """Shell for ``docker``: on the real node, the images localcluster built are tagged there
    under the README's names; on kind, docker builds them and ``kind load`` stands for the push."""
    if provider_name() == "kind":
        cluster = shlex.quote(os.environ.get("KIND_CLUSTER_NAME", "kubetasks-e2e"))
        return (f'docker() {{ if [ "$1" = push ]; then kind load docker-image --name {cluster} "$2"; '
                'else command docker "$@"; fi; }')
    node = e2e.extra["node"]
    for target, built in build_tags(block, setting(block, "REGISTRY")).items():
        node.ctr("images", "tag", "--force", f"docker.io/{built}", target)
    return 'docker() { echo "docker $*: tagged on the node from the image localcluster built"; }'


def node_script(e2e: Stack, block: str, database_url: str) -> str:
    """The block, with the image builder and the node's network values swapped in."""
    values = e2e.workdir / "getting-started-node-values.json"
    values.write_text(json.dumps({k: v for k, v in e2e.operator_values.items() if k != "image"}))
    preamble = f"""
set -euo pipefail
{image_builder(e2e, block)}
helm() {{
    if [ "$1" = install ]; then command helm "$@" --values {shlex.quote(str(values))}
    else command helm "$@"; fi
}}
"""
    body = re.sub(r"^export DATABASE_URL=\S+", f"export DATABASE_URL={shlex.quote(database_url)}",
                  block, flags=re.MULTILINE)
    return preamble + body


def test_the_readme_takes_a_user_from_a_checkout_to_tasks_run_on_the_cluster(
        e2e: Stack, empty_database: tuple[str, str], readme_release: None) -> None:
    local_url, pod_url = empty_database
    script = node_script(e2e, readme_block(), pod_url)
    env = {**os.environ, "KUBECONFIG": str(e2e.kubeconfig),
           "PATH": f"{Path(e2e.helm).parent}{os.pathsep}{os.environ['PATH']}"}
    ran = subprocess.run(["bash", "-x", "-c", script], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=1200)
    output = ran.stdout + ran.stderr
    print(output[-8000:])
    assert ran.returncode == 0, output[-6000:]

    # The hook Job migrated the empty database before the operator came up.
    with psycopg.connect(local_url) as conn:
        versions = [v for (v,) in conn.execute("SELECT version FROM kubetasks_migrations ORDER BY 1")]
        states = dict(conn.execute(
            "SELECT state::text, count(*) FROM kubetasks_tasks GROUP BY 1").fetchall())
    assert versions == [m.version for m in available()]
    # The app's Job enqueued 400 tasks and saw every one succeed; the workers scaled for them.
    assert "all 400 finished after" in ran.stdout and "400 SUCCESSFUL" in ran.stdout
    assert states == {"SUCCESSFUL": 400}
    assert re.search(r"Scaled\s+taskqueue/media\s+0 -> [1-4]:", ran.stdout), ran.stdout[-3000:]
