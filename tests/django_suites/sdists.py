"""The sdists whose test suites kubetasks runs, fetched once with ``pip download`` into
``~/.cache/kubetasks/sdists`` and read from there afterwards, so later runs work offline."""

from __future__ import annotations

import os
import subprocess
import tarfile
from pathlib import Path

CACHE = Path(os.environ.get("KUBETASKS_CACHE", Path.home() / ".cache" / "kubetasks")) / "sdists"


def sdist(requirement: str, pattern: str, *, python: str) -> Path:
    """The cached sdist matching ``pattern`` (e.g. ``django-6.1.*.tar.gz``), else downloaded
    with ``python``'s pip (the interpreter decides which versions fit)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    found = sorted(CACHE.glob(pattern))
    if found:
        return found[-1]
    done = subprocess.run(
        [python, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps", "--quiet",
         "--disable-pip-version-check", "-d", str(CACHE), requirement],
        capture_output=True, text=True, timeout=600)
    found = sorted(CACHE.glob(pattern))
    if done.returncode != 0 or not found:
        raise RuntimeError(f"pip download {requirement} into {CACHE} failed "
                           f"(exit {done.returncode}): {done.stderr[-2000:]}")
    return found[-1]


def extract(archive: Path, member_prefix: str, into: Path) -> Path:
    """Extract the members of ``archive`` under ``<top>/<member_prefix>`` into ``into``;
    returns the extracted ``<top>`` directory."""
    with tarfile.open(archive) as tar:
        top = tar.getnames()[0].split("/")[0]
        wanted = [m for m in tar.getmembers() if m.name.startswith(f"{top}/{member_prefix}")]
        tar.extractall(into, members=wanted, filter="data")
    return into / top
