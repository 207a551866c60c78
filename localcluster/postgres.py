"""A throwaway PostgreSQL server for tests and demos, from the installed server binaries.

PostgreSQL refuses to run as root, so as root the server runs as the ``postgres`` user.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def bindir() -> Path:
    configured = os.environ.get("KUBETASKS_PG_BINDIR")
    if configured:
        return Path(configured)
    found = shutil.which("pg_config")
    if found:
        out = subprocess.run([found, "--bindir"], capture_output=True, text=True, check=True)
        candidate = Path(out.stdout.strip())
        if (candidate / "initdb").exists():
            return candidate
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "initdb").exists():
            return candidate
    raise RuntimeError("PostgreSQL server binaries not found: install postgresql "
                       "(Debian: apt-get install postgresql) or set KUBETASKS_PG_BINDIR")


class LocalPostgres:
    """``with LocalPostgres() as pg: pg.dsn`` — initdb, start on a free loopback port, stop."""

    def __init__(
        self, *, port: int | None = None, max_connections: int = 300, also_listen: str = "",
        trust_network: str = "",
    ) -> None:
        """``also_listen``: one more address to serve on (a real node's bridge, for its pods),
        whose clients from ``trust_network`` (e.g. ``10.244.0.0/24``) are let in."""
        self.port = port or free_port()
        self.also_listen = also_listen
        self.trust_network = trust_network
        self.max_connections = max_connections
        self.root = Path(tempfile.mkdtemp(prefix="kubetasks-pg-"))
        self.data = self.root / "data"
        self.user = "postgres"
        self._as_postgres = os.geteuid() == 0

    @property
    def dsn(self) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        command = [str(bindir() / args[0]), *args[1:]]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, cwd=self.root)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")

    def start(self) -> LocalPostgres:
        if self._as_postgres:
            owner = pwd.getpwnam("postgres")
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", self.user, "-A", "trust", "-E", "UTF8",
                  "--no-sync")
        if self.trust_network:
            with (self.data / "pg_hba.conf").open("a") as hba:
                hba.write(f"host all all {self.trust_network} trust\n")
        self._start_server()
        return self

    def _start_server(self) -> None:
        options = " ".join([
            f"-p {self.port}", f"-c listen_addresses={self._listen_addresses()}", f"-k {self.root}",
            f"-c max_connections={self.max_connections}", "-c fsync=off",
            "-c synchronous_commit=off", "-c full_page_writes=off", "-c shared_buffers=128MB",
        ])
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.root / "log"),
                  "-w", "-t", "60", "start")

    def _listen_addresses(self) -> str:
        return ",".join(["127.0.0.1", *([self.also_listen] if self.also_listen else [])])

    def dsn_at(self, host: str, database: str = "postgres") -> str:
        """The URL of ``database`` through ``host`` (the bridge address, for pods)."""
        return f"postgresql://{self.user}@{host}:{self.port}/{database}"

    def restart(self) -> None:
        """Stop (fast: clients are cut off, nothing committed is lost) and start again."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop")
        self._start_server()

    def stop(self) -> None:
        if self.data.exists():
            with contextlib.suppress(RuntimeError):
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> LocalPostgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
