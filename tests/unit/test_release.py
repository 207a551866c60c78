"""What the release workflow publishes, built here: the chart package, the wheel and the sdist.

``.github/workflows/release.yml`` runs ``helm package``, ``python -m build`` and ``twine check``
on a tag ``v<version>``; these tests run the same commands on the working tree, so a release
never finds out first that the versions disagree or the wheel lacks a package. The tools are
not installed by the tests: a missing one fails the test with the command that installs it.
"""

from __future__ import annotations

import configparser
import importlib.util
import os
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest
import yaml
from localcluster.controlplane import Binaries, ControlPlaneError, cache_root

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
VERSION = PYPROJECT["project"]["version"]
WORKFLOW = REPO / ".github" / "workflows" / "release.yml"
# What an sdist is built from (setuptools finds the packages under src/ and operator/).
SDIST_SOURCES = ("pyproject.toml", "README.md", "LICENSE", "src", "operator")


def require_module(module: str, pip_package: str) -> None:
    if importlib.util.find_spec(module) is None:
        pytest.fail(f"{module} is missing: python3 -m pip install -e '.[dev]' (or pip install {pip_package})")


def run(*command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, (
        f"{' '.join(command)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``python -m build`` of a copy of the sources (the work tree gets no build/ or egg-info)."""
    require_module("build", "build")
    source = tmp_path_factory.mktemp("source")
    for name in SDIST_SOURCES:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(path, source / name)
    out = tmp_path_factory.mktemp("dist")
    # Isolated, as in the workflow: the build backend of pyproject.toml's build-system.
    run(sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", str(out), ".",
        cwd=source)
    return out


def test_the_chart_package_has_the_version_of_pyproject(tmp_path: Path) -> None:
    try:
        helm = Binaries.from_cache().helm
    except ControlPlaneError as error:
        pytest.fail(str(error))
    run(str(helm), "package", str(REPO / "charts" / "kubetasks"), "--destination", str(tmp_path),
        cwd=tmp_path)
    [package] = tmp_path.glob("*.tgz")
    assert package.name == f"kubetasks-{VERSION}.tgz"
    with tarfile.open(package) as archive:
        names = set(archive.getnames())
        meta = yaml.safe_load(archive.extractfile("kubetasks/Chart.yaml").read())  # type: ignore[union-attr]
    assert (meta["version"], meta["appVersion"]) == (VERSION, VERSION)
    # What the chart reads at install time travels with it.
    assert {"kubetasks/values.schema.json", "kubetasks/crds/taskqueue.yaml",
            "kubetasks/dashboards/kubetasks.json", "kubetasks/templates/operator/deployment.yaml"} <= names


def test_the_wheel_holds_both_packages_their_data_and_the_commands(dist: Path) -> None:
    [wheel] = dist.glob("*.whl")
    assert wheel.name == f"kubetasks-{VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        info = f"kubetasks-{VERSION}.dist-info"
        entry_points = archive.read(f"{info}/entry_points.txt").decode()
        metadata = archive.read(f"{info}/METADATA").decode()
    assert {"kubetasks/__init__.py", "kubetasks/py.typed", "kubetasks/sql/queries.sql",
            "kubetasks/sql/migrations/0001_initial.sql", "kubetasks_operator/__init__.py",
            "kubetasks_operator/py.typed", f"{info}/licenses/LICENSE"} <= names
    migrations = {p.name for p in (REPO / "src" / "kubetasks" / "sql" / "migrations").glob("*.sql")}
    assert {n.rsplit("/", 1)[1] for n in names if n.startswith("kubetasks/sql/migrations/")} == migrations
    assert not [n for n in names if n.startswith(("tests/", "localcluster/"))]
    scripts = configparser.ConfigParser()
    scripts.read_string(entry_points)
    assert dict(scripts["console_scripts"]) == PYPROJECT["project"]["scripts"]
    assert "License-Expression: Apache-2.0" in metadata


def test_the_sdist_builds_and_twine_check_passes(dist: Path) -> None:
    require_module("twine", "twine")
    [sdist] = dist.glob("*.tar.gz")
    assert sdist.name == f"kubetasks-{VERSION}.tar.gz"
    with tarfile.open(sdist) as archive:
        names = set(archive.getnames())
    assert {f"kubetasks-{VERSION}/LICENSE", f"kubetasks-{VERSION}/pyproject.toml",
            f"kubetasks-{VERSION}/src/kubetasks/sql/queries.sql"} <= names
    checked = run(sys.executable, "-m", "twine", "check", "--strict", *map(str, dist.iterdir()), cwd=dist)
    assert checked.stdout.count("PASSED") == 2, checked.stdout


def test_the_release_workflow_passes_actionlint() -> None:
    cached = cache_root() / "tools" / "actionlint"
    actionlint = shutil.which("actionlint") or (str(cached) if os.access(cached, os.X_OK) else None)
    if actionlint is None:
        pytest.fail(f"actionlint is missing: GOBIN={cached.parent} go install "
                    "github.com/rhysd/actionlint/cmd/actionlint@v1.7.7")
    run(actionlint, str(WORKFLOW), cwd=REPO)


def test_the_release_workflow_publishes_both_images_the_chart_and_the_package() -> None:
    jobs = yaml.safe_load(WORKFLOW.read_text())["jobs"]
    builds = {entry["name"]: entry["dockerfile"] for entry in jobs["images"]["strategy"]["matrix"]["include"]}
    assert builds == {"operator": "Dockerfile", "worker": "worker_image/Dockerfile"}
    for dockerfile in builds.values():
        assert (REPO / dockerfile).is_file()
    [push] = [step for step in jobs["images"]["steps"]
              if step.get("uses", "").startswith("docker/build-push-action")]
    assert push["with"]["platforms"] == "linux/amd64,linux/arm64"
    chart_script = next(step["run"] for step in jobs["chart"]["steps"] if "run" in step)
    assert 'helm push "dist/kubetasks-$VERSION.tgz" "oci://ghcr.io/$owner/charts"' in chart_script
    assert jobs["pypi"]["permissions"] == {"id-token": "write"}
