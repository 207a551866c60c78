"""The kubetasks images, built on this machine with buildah: no daemon, no container registry.

What is built (``python -m localcluster.images`` builds them all and prints where they are):

- ``localhost/kubetasks/python-base:bookworm``, used only as the base of the builds below: Debian
  bookworm (minbase) from the host's apt mirror with mmdebstrap, with python3 (3.11) and a venv
  in /opt/venv that is first on PATH. It stands in for ``python:3.12-slim``, which cannot be
  pulled here.
- ``kubetasks/pause:3.10``: ``pause.c`` compiled static, the node's pod sandbox image.
- ``kubetasks/operator:dev`` from ``Dockerfile`` and ``kubetasks/worker:dev`` from
  ``worker_image/Dockerfile``, both built FROM the base through ``--build-arg BASE_IMAGE``.
- ``kubetasks/example-app:dev`` from ``examples/app/Dockerfile``, built FROM the worker.
- ``kubetasks/django-app:dev`` from ``examples/django_app/Dockerfile`` (an argus-like Django
  project, its worker ``manage.py kubetasks_worker``), built FROM the worker.

Each image is written as a docker-archive tar whose reference is the image's name, ready for
``ctr -n k8s.io images import`` (which names it ``docker.io/<name>``) and ``kind load
image-archive``. When ``$PIP_CERT`` names a CA bundle (a TLS-intercepting proxy), pip inside
the builds trusts it through the build secret ``pipcert``; it is never part of an image.

Caching is by content. Each image has a key, a hash of what its build reads: its recipe
(commands, package lists, build args), its Dockerfile with the files its COPY lines name
(``__pycache__`` and the like left out) and the ``.dockerignore``, and its base image's key.
Archives are kept as ``$KUBETASKS_CACHE/images/<image>-<key>.tar`` (the three most recently
used of each image): an archive that exists is used as it is, so an unchanged tree builds
nothing. buildah's store holds the latest build of each name; a base that is not the one of
its key there is loaded again from its archive. The Debian mirror is not part of any key.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .controlplane import cache_root

REPO = Path(__file__).resolve().parent.parent
Log = Callable[[str], None]

SUITE = "bookworm"
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates")
VENV = "/opt/venv"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
KEY_LABEL = "io.kubetasks.build-key"
KEPT_ARCHIVES = 3  # per image, the most recently built or used

# The Debian package that provides each tool the builds run.
PACKAGES = {"buildah": "buildah", "mmdebstrap": "mmdebstrap", "gcc": "gcc libc6-dev"}
# Left out of build contexts (see .dockerignore) and of the cache keys.
SKIPPED_NAMES = frozenset({"__pycache__", ".mypy_cache", ".pytest_cache", ".ruff_cache", ".hypothesis"})
SKIPPED_SUFFIXES = (".pyc", ".pyo", ".egg-info")


@dataclass(frozen=True)
class Image:
    """A built image: its reference, and a docker-archive tar that carries that reference."""

    name: str
    archive: Path

    @property
    def containerd_name(self) -> str:
        """The name ``ctr images import`` gives it: short names get ``docker.io/``, as in pods."""
        if "/" not in self.name:
            return f"docker.io/library/{self.name}"
        domain = self.name.split("/")[0]
        has_registry = "." in domain or ":" in domain or domain == "localhost"
        return self.name if has_registry else f"docker.io/{self.name}"


@dataclass(frozen=True)
class DockerfileImage:
    """How to build one image from a Dockerfile in this repository."""

    slug: str  # its key in build_images() and its archive's name
    name: str
    dockerfile: str  # relative to the repository, which is the build context
    base_arg: str  # the build ARG that names the base image


OPERATOR = DockerfileImage("operator", "kubetasks/operator:dev", "Dockerfile", "BASE_IMAGE")
WORKER = DockerfileImage("worker", "kubetasks/worker:dev", "worker_image/Dockerfile", "BASE_IMAGE")
APP = DockerfileImage("app", "kubetasks/example-app:dev", "examples/app/Dockerfile", "WORKER_IMAGE")
DJANGO_APP = DockerfileImage("django-app", "kubetasks/django-app:dev", "examples/django_app/Dockerfile",
                             "WORKER_IMAGE")
PAUSE_NAME = "kubetasks/pause:3.10"
BASE_NAME = "localhost/kubetasks/python-base:bookworm"


class BuildError(RuntimeError):
    """An image could not be built; the message names the command and the end of its log."""


class MissingTool(BuildError):
    """A program the build needs is not installed; the message names its Debian package."""


@dataclass(frozen=True)
class Built:
    """An image in the cache, with its key and its name in buildah's local store."""

    image: Image
    key: str

    @property
    def local(self) -> str:
        """Its name in buildah's store: the full name, as containerd has it. (A short name
        would become ``localhost/<name>``, and a docker-archive pushed from it would carry
        that name too.)"""
        return self.image.containerd_name


# --- cache keys --------------------------------------------------------------------------


def digest(recipe: object) -> str:
    """The sha256 of a JSON-serialisable recipe."""
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()


def skipped(path: Path) -> bool:
    return any(part in SKIPPED_NAMES or part.endswith(SKIPPED_SUFFIXES) for part in path.parts)


def copy_sources(dockerfile: str) -> list[str]:
    """The context paths (maybe globs) that the COPY and ADD lines of a Dockerfile read."""
    sources: list[str] = []
    for line in dockerfile.replace("\\\n", " ").splitlines():
        words = line.split(maxsplit=1)
        if len(words) < 2 or words[0].upper() not in ("COPY", "ADD"):
            continue
        flags, rest = [], words[1].strip()
        while rest.startswith("--"):
            flag, _, rest = rest.partition(" ")
            flags.append(flag)
            rest = rest.strip()
        if any(flag.startswith("--from=") for flag in flags):
            continue
        paths = (json.loads(rest) if rest.startswith("[") else shlex.split(rest))[:-1]
        sources += [path for path in paths if "://" not in path]
    return sources


def context_files(context: Path, sources: Iterable[str]) -> list[Path]:
    """The files under ``context`` that ``sources`` name, directories walked, sorted."""
    found: set[Path] = set()
    for source in sources:
        for match in sorted(context.glob(source.lstrip("/"))) or [context / source]:
            if not match.exists():
                raise BuildError(f"{source} is copied by a Dockerfile but {match} does not exist")
            walked = [match] if match.is_file() else [p for p in match.rglob("*") if p.is_file()]
            found.update(p for p in walked if not skipped(p.relative_to(context)))
    return sorted(found)


def files_digest(context: Path, files: Iterable[Path]) -> dict[str, str]:
    return {str(p.relative_to(context)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def dockerfile_key(spec: DockerfileImage, base: Built, context: Path = REPO) -> str:
    """The cache key of an image built from ``spec``: see the module's docstring."""
    text = (context / spec.dockerfile).read_text()
    ignore = context / ".dockerignore"
    return digest({
        "name": spec.name,
        "dockerfile": text,
        "dockerignore": ignore.read_text() if ignore.exists() else "",
        "files": files_digest(context, context_files(context, copy_sources(text))),
        "build": bud_options(spec, base.local),
        "base": base.key,
    })


# --- running the tools -------------------------------------------------------------------


def require(tool: str) -> str:
    """The path of ``tool``, or MissingTool naming the package to install."""
    path = shutil.which(tool)
    if path is None:
        package = PACKAGES.get(tool, tool)
        raise MissingTool(f"{tool} is not installed: apt-get install -y {package}")
    return path


def run(args: Sequence[str], *, log_file: Path) -> str:
    """Run a command with no stdin, its stderr appended to ``log_file``; return its stdout."""
    require(args[0])
    with log_file.open("a") as log:
        log.write(f"$ {shlex.join(args)}\n")
        log.flush()
        done = subprocess.run(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, text=True)
        log.write(done.stdout)
    if done.returncode != 0:
        tail = "".join(log_file.read_text().splitlines(keepends=True)[-30:])
        raise BuildError(f"{shlex.join(args)} exited {done.returncode} (log: {log_file}):\n{tail}")
    return done.stdout


def inspect_image(name: str, template: str) -> str | None:
    """``buildah inspect --format template`` of a local image, or None if there is none."""
    found = subprocess.run(["buildah", "inspect", "--type", "image", "--format", template, name],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True)
    return found.stdout.strip() if found.returncode == 0 else None


def debian_mirror(apt: Path = Path("/etc/apt")) -> str:
    """The host's Debian mirror (``$KUBETASKS_DEBIAN_MIRROR`` wins): mmdebstrap must be given
    one, or it reads sources from stdin."""
    if explicit := os.environ.get("KUBETASKS_DEBIAN_MIRROR"):
        return explicit
    for sources in sorted(apt.glob("sources.list.d/*.sources")):
        for paragraph in sources.read_text().split("\n\n"):
            fields = dict(line.split(":", 1) for line in paragraph.splitlines()
                          if ":" in line and not line.startswith(("#", " ")))
            suites = fields.get("Suites", "").split()
            if "deb" in fields.get("Types", "").split() and any("-" not in s for s in suites):
                return fields.get("URIs", DEFAULT_MIRROR).split()[0]
    legacy = apt / "sources.list"
    for line in legacy.read_text().splitlines() if legacy.exists() else []:
        words = line.split()
        if len(words) >= 3 and words[0] == "deb" and "-" not in words[2]:
            return next(w for w in words[1:] if "://" in w)
    return DEFAULT_MIRROR


def pip_cert() -> Path | None:
    """The CA bundle pip must trust during builds: ``$PIP_CERT`` when it names a file."""
    cert = os.environ.get("PIP_CERT")
    return Path(cert) if cert and Path(cert).is_file() else None


def bud_options(spec: DockerfileImage, base: str) -> list[str]:
    """The ``buildah bud`` options that shape the image (the cache key includes them)."""
    return ["--network", "host", "--pull=never", "--layers=false", "-f", spec.dockerfile,
            "--build-arg", f"{spec.base_arg}={base}"]


def mmdebstrap_options() -> list[str]:
    """mmdebstrap's options for the base's root filesystem (the cache key includes them)."""
    return [
        "--variant=minbase",
        f"--include={','.join(BASE_PACKAGES)}",
        "--dpkgopt=path-exclude=/usr/share/doc/*",
        "--dpkgopt=path-include=/usr/share/doc/*/copyright",
        "--dpkgopt=path-exclude=/usr/share/man/*",
        "--dpkgopt=path-exclude=/usr/share/locale/*",
        f'--customize-hook=chroot "$1" python3 -m venv {VENV}',
    ]


BASE_CONFIG = [
    "--env", f"PATH={VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "--env", f"VIRTUAL_ENV={VENV}",
    "--env", "LANG=C.UTF-8",
    "--env", "PIP_DISABLE_PIP_VERSION_CHECK=1",
    "--env", "PIP_ROOT_USER_ACTION=ignore",
    "--cmd", "python3",
]
PAUSE_CFLAGS = ["-static", "-O2", "-s", "-Wall", "-Wextra"]
PAUSE_CONFIG = ["--entrypoint", '["/pause"]', "--cmd", "", "--user", "65535:65535"]


# --- the builder -------------------------------------------------------------------------


class Builder:
    """Builds images into ``cache`` (the images folder), logging each step with its duration."""

    def __init__(self, cache: Path, log: Log, repo: Path = REPO) -> None:
        self.cache = cache
        self.log = log
        self.repo = repo
        (cache / "logs").mkdir(parents=True, exist_ok=True)

    @contextmanager
    def locked(self) -> Iterator[None]:
        """One build at a time per cache, across processes."""
        with (self.cache / ".lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    @contextmanager
    def step(self, what: str) -> Iterator[None]:
        started = time.monotonic()
        yield
        self.log(f"{what}: {time.monotonic() - started:.1f} s")

    def log_file(self, slug: str) -> Path:
        return self.cache / "logs" / f"{slug}.log"

    def cached(self, slug: str, name: str, key: str) -> tuple[Built, bool]:
        """The image for ``key``, and whether its archive is already there."""
        built = Built(Image(name, self.cache / f"{slug}-{key[:16]}.tar"), key)
        if built.image.archive.exists():
            built.image.archive.touch()  # the newest are kept: see export()
            self.log(f"{slug}: {name} is cached ({built.image.archive.name})")
            return built, True
        self.log_file(slug).write_text("")
        return built, False

    def run(self, slug: str, *args: str) -> str:
        return run(args, log_file=self.log_file(slug)).strip()

    # -- the images

    def python_base(self) -> Built:
        recipe = {"suite": SUITE, "mmdebstrap": mmdebstrap_options(), "config": BASE_CONFIG}
        built, hit = self.cached("python-base", BASE_NAME, digest(recipe))
        if hit:
            return built
        with tempfile.TemporaryDirectory(prefix="kubetasks-rootfs-") as tmp:
            rootfs = Path(tmp) / "rootfs.tar"
            mirror = debian_mirror()
            with self.step(f"python-base: mmdebstrap {SUITE} from {mirror}"):
                self.run("python-base", "mmdebstrap", *mmdebstrap_options(), SUITE, str(rootfs), mirror)
            with self.step("python-base: buildah from scratch, add, commit"):
                self.commit_scratch("python-base", built, [(rootfs, "/")], BASE_CONFIG)
        self.export("python-base", built)
        return built

    def pause(self) -> Built:
        source = Path(__file__).with_name("pause.c")
        recipe = {"source": source.read_text(), "cflags": PAUSE_CFLAGS, "config": PAUSE_CONFIG}
        built, hit = self.cached("pause", PAUSE_NAME, digest(recipe))
        if hit:
            return built
        with tempfile.TemporaryDirectory(prefix="kubetasks-pause-") as tmp:
            binary = Path(tmp) / "pause"
            with self.step("pause: gcc -static pause.c, buildah from scratch, commit"):
                self.run("pause", "gcc", *PAUSE_CFLAGS, "-o", str(binary), str(source))
                self.commit_scratch("pause", built, [(binary, "/pause")], PAUSE_CONFIG)
        self.export("pause", built)
        return built

    def from_dockerfile(self, spec: DockerfileImage, base: Built) -> Built:
        built, hit = self.cached(spec.slug, spec.name, dockerfile_key(spec, base, self.repo))
        if hit:
            return built
        self.restore(spec.slug, base)
        secret = pip_cert()
        secrets = ["--secret", f"id=pipcert,src={secret}"] if secret else []
        with self.step(f"{spec.slug}: buildah bud {spec.dockerfile}"), self.replacing(built):
            self.run(spec.slug, "buildah", "bud", "--force-rm", *bud_options(spec, base.local), *secrets,
                     "--label", f"{KEY_LABEL}={built.key}", "-t", built.local, str(self.repo))
        self.export(spec.slug, built)
        return built

    # -- buildah's store and the archives

    @contextmanager
    def replacing(self, built: Built) -> Iterator[None]:
        """Around a build of ``built``: remove the image it takes the name from, once nothing
        else names or uses it, so that rebuilds do not pile up in buildah's store."""
        previous = inspect_image(built.local, "{{.FromImageID}}")
        yield
        if previous and previous != inspect_image(built.local, "{{.FromImageID}}"):
            dangling = subprocess.run(
                ["buildah", "images", "--filter", "dangling=true", "--no-trunc", "--format", "{{.ID}}"],
                stdin=subprocess.DEVNULL, capture_output=True, text=True).stdout.split()
            if f"sha256:{previous}" in dangling:
                subprocess.run(["buildah", "rmi", previous], stdin=subprocess.DEVNULL, capture_output=True)

    def commit_scratch(self, slug: str, built: Built, files: Sequence[tuple[Path, str]],
                       config: Sequence[str]) -> None:
        """An image from scratch holding ``files`` (a tar is unpacked), committed as ``built``."""
        container = self.run(slug, "buildah", "from", "scratch")
        try:
            for source, destination in files:
                self.run(slug, "buildah", "add", container, str(source), destination)
            self.run(slug, "buildah", "config", *config, "--label", f"{KEY_LABEL}={built.key}", container)
            with self.replacing(built):
                self.run(slug, "buildah", "commit", "--rm", container, built.local)
        except BaseException:
            subprocess.run(["buildah", "rm", container], stdin=subprocess.DEVNULL, capture_output=True)
            raise

    def export(self, slug: str, built: Built) -> None:
        """Write ``built``'s archive (atomically), then drop all but the newest few archives of
        the image: another checkout, or a test that still imports one, may use an older key."""
        archive = built.image.archive
        partial = archive.with_suffix(".partial")
        partial.unlink(missing_ok=True)
        with self.step(f"{slug}: buildah push docker-archive:{archive.name}"):
            self.run(slug, "buildah", "push", "--quiet", built.local,
                     f"docker-archive:{partial}:{built.image.name}")
        partial.rename(archive)
        by_age = sorted(self.cache.glob(f"{slug}-*.tar"), key=lambda p: p.stat().st_mtime, reverse=True)
        for old in by_age[KEPT_ARCHIVES:]:
            old.unlink(missing_ok=True)

    def restore(self, slug: str, base: Built) -> None:
        """Make sure buildah's store holds ``base`` as built for its key (it may hold another
        checkout's build, or none): if not, load it from its archive."""
        label = "{{index .OCIv1.Config.Labels \"" + KEY_LABEL + "\"}}"
        if inspect_image(base.local, label) == base.key:
            return
        with self.step(f"{slug}: load its base {base.image.name} from {base.image.archive.name}"):
            loaded = self.run(slug, "buildah", "pull", "--quiet", f"docker-archive:{base.image.archive}")
            self.run(slug, "buildah", "tag", loaded.splitlines()[-1], base.local)


def build_images(*, cache: Path | None = None, log: Log = print) -> dict[str, Image]:
    """Build (or find in the cache) the pause, operator, worker and example app images.

    Returns them by short name: ``pause``, ``operator``, ``worker``, ``app``, ``django-app``.
    """
    builder = Builder((cache or cache_root()) / "images", log)
    started = time.monotonic()
    with builder.locked():
        base = builder.python_base()
        built = {
            "pause": builder.pause(),
            "operator": builder.from_dockerfile(OPERATOR, base),
            "worker": (worker := builder.from_dockerfile(WORKER, base)),
            "app": builder.from_dockerfile(APP, worker),
            "django-app": builder.from_dockerfile(DJANGO_APP, worker),
        }
    log(f"images ready in {time.monotonic() - started:.1f} s")
    return {slug: b.image for slug, b in built.items()}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localcluster.images",
                                     description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--cache", type=Path, default=None,
                        help="cache folder (default: $KUBETASKS_CACHE, else ~/.cache/kubetasks)")
    args = parser.parse_args(argv)
    try:
        images = build_images(cache=args.cache)
    except BuildError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    for image in images.values():
        print(f"{image.name} -> {image.archive}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
