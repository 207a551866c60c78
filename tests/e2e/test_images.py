"""The kubetasks images as built by ``localcluster.images``: what their users would notice.

The images are built once for this module (or found in the cache, as a second build shows).
Each test reads the docker-archive files, the form a node imports, not buildah's store, which
other checkouts on the machine share.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from pathlib import Path

import pytest
from localcluster.images import (
    APP,
    OPERATOR,
    REPO,
    WORKER,
    Built,
    Image,
    MissingTool,
    build_images,
    copy_sources,
    debian_mirror,
    dockerfile_key,
    require,
)
from localcluster.postgres import LocalPostgres

from kubetasks.backends import PostgresBackend
from kubetasks.migrations import migrate
from kubetasks.result import TaskResultStatus
from kubetasks.store import Store

from .providers import provider_name

pytestmark = [
    pytest.mark.timeout(1800),  # a cold build takes minutes on a busy machine
    # On kind, tests/e2e/kind.sh builds the images with docker; these hold the buildah builds.
    pytest.mark.skipif(provider_name() != "node",
                       reason="the buildah image builds are the real node's; kind.sh builds with docker"),
]

VERSION = re.search(r'^version = "(.+)"$', (REPO / "pyproject.toml").read_text(), re.MULTILINE)


@pytest.fixture(scope="module")
def images() -> dict[str, Image]:
    return build_images(log=print)


# --- running images ----------------------------------------------------------------------


@contextmanager
def container_of(image: Image) -> Iterator[str]:
    """A buildah working container of ``image``, made from its archive."""
    container = run("buildah", "from", "--pull-never", f"docker-archive:{image.archive}").strip()
    try:
        yield container
    finally:
        subprocess.run(["buildah", "rm", container], capture_output=True)


@pytest.fixture(scope="module")
def containers(images: dict[str, Image]) -> Iterator[dict[str, str]]:
    """A container of each image, by the image's short name."""
    with ExitStack() as stack:
        yield {slug: stack.enter_context(container_of(image)) for slug, image in images.items()}


def run(*args: str, check: bool = True, timeout: float = 300) -> str:
    done = subprocess.run(args, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=timeout)
    if check and done.returncode != 0:
        raise AssertionError(f"{args} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def in_container(container: str, *command: str, env: dict[str, str] | None = None) -> str:
    """``command`` in the container, as the image's user, on the host's network."""
    flags = [f"--env={name}={value}" for name, value in (env or {}).items()]
    return run("buildah", "run", "--network", "host", *flags, container, "--", *command)


def config(container: str, field: str) -> str:
    return run("buildah", "inspect", "--format", "{{.OCIv1.Config." + field + "}}", container).strip()


def test_worker_image_runs_the_worker_command_as_uid_10001(containers: dict[str, str]) -> None:
    worker = containers["worker"]
    assert config(worker, "Entrypoint") == "[kubetasks worker]"
    assert "--import MODULE" in in_container(worker, "kubetasks", "worker", "--help")
    assert in_container(worker, "id", "-u").strip() == "10001"
    assert VERSION is not None
    script = "import importlib.metadata as m, sys; print(m.version('kubetasks'), sys.version_info >= (3, 11))"
    installed = in_container(worker, "python", "-c", script)
    assert installed.split() == [VERSION.group(1), "True"]


def test_operator_image_has_the_operator_and_runs_as_uid_10001(containers: dict[str, str]) -> None:
    operator = containers["operator"]
    assert config(operator, "Entrypoint") == "[kubetasks-operator]"
    assert config(operator, "User") == "10001"
    script = "import kopf, kubernetes, kubetasks_operator; print('ok')"
    assert in_container(operator, "python", "-c", script).strip() == "ok"
    where = in_container(operator, "sh", "-c", "command -v kubetasks-operator").strip()
    assert where == "/opt/venv/bin/kubetasks-operator"


def test_example_app_image_runs_a_worker_of_app_tasks(containers: dict[str, str]) -> None:
    app = containers["app"]
    assert (config(app, "Entrypoint"), config(app, "Cmd")) == ("[kubetasks worker]", "[--import app.tasks]")
    script = "import app.tasks; from kubetasks.task import registry; print(sorted(registry))"
    registered = in_container(app, "python", "-c", script)
    assert "app.tasks.make_thumbnail" in registered
    assert "--expected-in SECONDS" in in_container(app, "python", "-m", "app.enqueue", "--help")
    assert in_container(app, "id", "-u").strip() == "10001"


def test_example_app_enqueues_and_its_worker_runs_the_tasks(
        images: dict[str, Image], containers: dict[str, str]) -> None:
    """``python -m app.enqueue`` in one container, ``kubetasks worker`` of the same image in
    another, against a database on the host's loopback."""
    with LocalPostgres() as postgres, container_of(images["app"]) as app_worker:
        migrate(postgres.dsn)
        env = {"KUBETASKS_DATABASE_URL": postgres.dsn}
        worker_env = [f"--env={k}={v}" for k, v in {**env, "POD_NAME": "image-worker"}.items()]
        worker = subprocess.Popen(
            ["buildah", "run", "--network", "host", *worker_env, app_worker, "--",
             "kubetasks", "worker", "--import", "app.tasks", "--health-port", "0"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            output = in_container(containers["app"], "python", "-m", "app.enqueue", "20",
                                  "--expected-in", "60", "--wait", "--timeout", "120", env=env)
        finally:
            worker.terminate()
            worker.wait(timeout=30)
        assert "enqueued 20 make_thumbnail tasks, expected within 60 s" in output
        assert "all 20 finished" in output and "20 SUCCESSFUL" in output
        ids = [line for line in output.splitlines() if line.isdigit()]
        assert len(ids) == 20
        with Store(postgres.dsn) as store:
            backend = PostgresBackend(store)
            results = [backend.get_result(task_id) for task_id in ids]
        assert {r.status for r in results} == {TaskResultStatus.SUCCESSFUL}
        assert {r.return_value["pod"] for r in results} == {"image-worker"}
        first = results[0]
        assert first.expected_at is not None and first.enqueued_at is not None
        assert 55 <= (first.expected_at - first.enqueued_at).total_seconds() <= 65


def test_enqueue_refuses_to_run_without_a_database(containers: dict[str, str]) -> None:
    done = subprocess.run(["buildah", "run", containers["app"], "--", "python", "-m", "app.enqueue", "1"],
                          capture_output=True, text=True)
    assert done.returncode != 0
    assert "KUBETASKS_DATABASE_URL" in done.stderr


# --- the build's CA stays out of the images ----------------------------------------------

PEM = re.compile(r"-----BEGIN CERTIFICATE-----(.+?)-----END CERTIFICATE-----", re.DOTALL)


def pem_bodies(path: Path) -> set[str]:
    return {"".join(body.split()) for body in PEM.findall(path.read_text(errors="replace"))}


def extra_cas() -> set[str]:
    """The CAs the build trusts beyond Debian's own list: those of ``$PIP_CERT`` (the build
    secret) and the local ones, less those that ``ca-certificates`` ships."""
    debian = set().union(*(pem_bodies(p) for p in Path("/usr/share/ca-certificates").rglob("*.crt")))
    bundle = Path(os.environ.get("PIP_CERT") or "/etc/ssl/certs/ca-certificates.crt")
    local = set().union(*(pem_bodies(p) for p in Path("/usr/local/share/ca-certificates").rglob("*.crt")))
    return ((pem_bodies(bundle) if bundle.is_file() else set()) | local) - debian


def needles(body: str) -> list[bytes]:
    """What would give a certificate away in a file: a line of its PEM, or a piece of its DER."""
    der = base64.b64decode(body)
    middle = len(body) // 2 // 64 * 64
    return [body[middle:middle + 64].encode(), der[len(der) // 2:len(der) // 2 + 48]]


def files_of_layers(archive: Path) -> Iterator[tuple[str, bytes]]:
    """Every regular file in every layer of a docker-archive, also those a later layer hides."""
    with tarfile.open(archive) as outer:
        for member in outer:
            if not member.name.endswith(".tar"):
                continue
            layer_file = outer.extractfile(member)
            assert layer_file is not None
            with tarfile.open(fileobj=layer_file, mode="r|") as layer:
                for entry in layer:
                    content = layer.extractfile(entry) if entry.isreg() else None
                    if content is not None:
                        yield entry.name, content.read()


def found_in(archive: Path, wanted: dict[str, list[bytes]]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for name, content in files_of_layers(archive):
        for label, pieces in wanted.items():
            if any(piece in content for piece in pieces):
                found.setdefault(label, []).append(name)
    return found


def test_the_ca_trusted_during_the_build_is_in_no_layer(images: dict[str, Image]) -> None:
    extras = extra_cas()
    if not extras:
        pytest.skip("this machine trusts no CA beyond Debian's: nothing to look for")
    # A control: a CA that Debian ships is found (in the base's trust store), so the search works.
    debian_ca = pem_bodies(Path("/usr/share/ca-certificates/mozilla/ISRG_Root_X1.crt")).pop()
    wanted = {"debian": needles(debian_ca)} | {f"extra {i}": needles(b) for i, b in enumerate(extras)}
    for slug in ("operator", "app", "django-app"):  # between them, every layer of every image
        found = found_in(images[slug].archive, wanted)
        assert "etc/ssl/certs/ca-certificates.crt" in found.get("debian", []), slug
        assert {label: where for label, where in found.items() if label != "debian"} == {}, slug


def test_no_build_setting_is_left_in_the_images(containers: dict[str, str]) -> None:
    for slug in ("operator", "worker", "app", "django-app"):
        env = config(containers[slug], "Env")
        assert "PIP_CERT" not in env and "pipcert" not in env, slug
        clean = 'test ! -e /src && test -z "$(ls -A /run/secrets 2>/dev/null)" && echo clean'
        assert in_container(containers[slug], "sh", "-c", clean).strip() == "clean", slug


# --- a node's containerd -----------------------------------------------------------------


@pytest.fixture(scope="module")
def containerd() -> Iterator[list[str]]:
    """A private containerd (own root, state and socket in a temporary folder); yields the
    ``ctr`` command for it. Stopped afterwards, leaving no process, mount or folder."""
    for tool in ("containerd", "ctr", "runc"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed: apt-get install -y containerd runc")
    root = Path(tempfile.mkdtemp(prefix="kt-ctrd-"))
    socket = root / "containerd.sock"
    (root / "config.toml").write_text(
        f'version = 2\nroot = "{root}/root"\nstate = "{root}/state"\n'
        'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
        f'[grpc]\n  address = "{socket}"\n[ttrpc]\n  address = "{socket}.ttrpc"\n'
        f'[plugins."io.containerd.internal.v1.opt"]\n  path = "{root}/opt"\n')
    with (root / "containerd.log").open("w") as log:
        daemon = subprocess.Popen(["containerd", "--config", str(root / "config.toml")],
                                  stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
    ctr = ["ctr", "--address", str(socket), "-n", "k8s.io"]
    try:
        deadline = time.monotonic() + 30
        while subprocess.run([*ctr, "version"], capture_output=True).returncode != 0:
            alive = daemon.poll() is None and time.monotonic() < deadline
            assert alive, (root / "containerd.log").read_text()
            time.sleep(0.2)
        yield ctr
    finally:
        daemon.terminate()
        daemon.wait(timeout=30)
        leave_nothing_under(root)


def leave_nothing_under(root: Path) -> None:
    """Stop the processes (containerd's shims) and undo the mounts that use ``root``."""
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if str(root) in (proc / "cmdline").read_bytes().decode(errors="replace"):
                os.kill(int(proc.name), signal.SIGKILL)
        except (OSError, ProcessLookupError):
            continue
    mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    for mount in reversed([m for m in mounts if m.startswith(str(root))]):
        subprocess.run(["umount", "-l", mount], capture_output=True)
    shutil.rmtree(root, ignore_errors=True)


def test_containerd_imports_the_archives_under_the_names_pods_use(
        images: dict[str, Image], containerd: list[str]) -> None:
    for image in images.values():
        run(*containerd, "images", "import", str(image.archive))
    listed = set(run(*containerd, "images", "ls", "-q").split())
    assert listed == {"docker.io/kubetasks/pause:3.10", "docker.io/kubetasks/operator:dev",
                      "docker.io/kubetasks/worker:dev", "docker.io/kubetasks/example-app:dev",
                      "docker.io/kubetasks/django-app:dev"}
    assert {image.containerd_name for image in images.values()} == listed
    # No cgroup for these runs (--cgroup ""), so that none is left behind.
    worker = run(*containerd, "run", "--rm", "--cgroup", "", "docker.io/kubetasks/worker:dev",
                 "kt-images-worker", "sh", "-c", "id -u && kubetasks worker --help")
    assert worker.startswith("10001\n") and "--import MODULE" in worker


def test_pause_runs_until_sigterm_and_exits_0(images: dict[str, Image], containerd: list[str]) -> None:
    run(*containerd, "images", "import", str(images["pause"].archive))
    pause = subprocess.Popen([*containerd, "run", "--rm", "--cgroup", "", "docker.io/kubetasks/pause:3.10",
                              "kt-images-pause"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        while "RUNNING" not in run(*containerd, "tasks", "ls", check=False):
            assert pause.poll() is None and time.monotonic() < deadline, pause.communicate()[0]
            time.sleep(0.2)
        time.sleep(1)
        assert pause.poll() is None, "pause ended by itself"
        run(*containerd, "tasks", "kill", "--signal", "SIGTERM", "kt-images-pause")
        assert pause.wait(timeout=30) == 0
    finally:
        if pause.poll() is None:
            subprocess.run([*containerd, "tasks", "kill", "--signal", "SIGKILL", "kt-images-pause"])
            pause.wait(timeout=30)


# --- the cache ---------------------------------------------------------------------------


def test_a_second_build_of_an_unchanged_tree_builds_nothing(images: dict[str, Image]) -> None:
    first = build_images()  # builds again only if someone edited the tree since the fixture ran
    lines: list[str] = []
    started = time.monotonic()
    assert build_images(log=lines.append) == first
    assert time.monotonic() - started < 10
    # The Python base and every image returned, each found in the cache.
    assert sum("is cached" in line for line in lines) == 1 + len(first), lines


def copy_of_the_build_context(to: Path) -> Path:
    """The files the Dockerfiles copy, plus some they do not, in a folder of their own."""
    for relative in ("Dockerfile", ".dockerignore", "pyproject.toml", "README.md", "worker_image",
                     "examples/app", "src", "operator", "docs"):
        source, target = REPO / relative, to / relative
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        elif source.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, target)
    return to


def test_cache_keys_follow_what_the_dockerfiles_copy(tmp_path: Path) -> None:
    context = copy_of_the_build_context(tmp_path / "repo")
    base = Built(Image("localhost/kubetasks/python-base:bookworm", tmp_path / "base.tar"), "base-key")
    keys = {spec.slug: dockerfile_key(spec, base, context) for spec in (OPERATOR, WORKER)}
    assert keys == {spec.slug: dockerfile_key(spec, base, REPO) for spec in (OPERATOR, WORKER)}

    def unchanged() -> bool:
        return all(dockerfile_key(spec, base, context) == keys[spec.slug] for spec in (OPERATOR, WORKER))

    (context / "src/kubetasks/__pycache__").mkdir(exist_ok=True)
    (context / "src/kubetasks/__pycache__/cli.cpython-311.pyc").write_bytes(b"\0")
    (context / "notes.txt").write_text("not copied by any Dockerfile")
    shutil.rmtree(context / "docs", ignore_errors=True)
    assert unchanged()

    operator_file = next((context / "operator").rglob("*.py"))
    operator_file.write_text(operator_file.read_text() + "\n# changed\n")
    assert dockerfile_key(WORKER, base, context) == keys["worker"]
    assert dockerfile_key(OPERATOR, base, context) != keys["operator"]

    (context / "src/kubetasks/cli.py").write_text((context / "src/kubetasks/cli.py").read_text() + "\n")
    assert dockerfile_key(WORKER, base, context) != keys["worker"]
    assert dockerfile_key(WORKER, replace(base, key="other"), REPO) != keys["worker"]


def test_copy_sources_are_read_from_the_dockerfiles() -> None:
    assert copy_sources((REPO / WORKER.dockerfile).read_text()) == ["pyproject.toml", "README.md", "src"]
    assert copy_sources((REPO / APP.dockerfile).read_text()) == ["examples/app/*.py"]
    assert copy_sources('COPY --chown=1:1 ["a b", "c", "/d/"]\nCOPY --from=x /y /z\n') == ["a b", "c"]


def test_a_missing_tool_names_the_debian_package(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(MissingTool, match=r"apt-get install -y mmdebstrap"):
        require("mmdebstrap")
    with pytest.raises(MissingTool, match=r"apt-get install -y gcc libc6-dev"):
        require("gcc")


def test_the_mirror_comes_from_the_hosts_apt_sources(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("KUBETASKS_DEBIAN_MIRROR", raising=False)
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d/debian.sources").write_text(
        "Types: deb\nURIs: http://security.example/debian-security\nSuites: bookworm-security\n\n"
        "Types: deb\n# a comment: here\nURIs: http://mirror.example/debian\n"
        "Suites: bookworm bookworm-updates\n")
    assert debian_mirror(tmp_path) == "http://mirror.example/debian"
    assert debian_mirror(tmp_path / "nothing") == "http://deb.debian.org/debian"
    monkeypatch.setenv("KUBETASKS_DEBIAN_MIRROR", "http://other.example/debian")
    assert debian_mirror(tmp_path) == "http://other.example/debian"

