"""A real, throwaway PostgreSQL for tests: `initdb` and `pg_ctl` into a temporary folder, one database per test.

PostgreSQL refuses to run as root, so when the tests run as root the server runs as the `postgres` system user
(`runuser`); its client tools (`psql`) run as anyone. fsync is off: nothing here has to survive a power cut.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.support.server import free_port

MISSING = "PostgreSQL binaries not found in /usr/lib/postgresql/*/bin (apt-get install postgresql)"


def find_bin() -> Path | None:
    """The newest installed PostgreSQL's bin folder."""
    found = [p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "initdb").exists()]
    return max(found, key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0, default=None)


class Unavailable(RuntimeError):
    """PostgreSQL cannot be started here; the message says why (the fixtures turn it into a skip)."""


class PostgresCluster:
    """One PostgreSQL server on loopback. `database()` hands out fresh, empty databases."""

    def __init__(self, bin_dir: Path, host: str = "127.0.0.1", clients: str | None = None) -> None:
        """`host`: the address it listens on; `clients`: a network (CIDR) also trusted, besides loopback."""
        self.clients = clients
        self.bin = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="ash-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.host = host
        self._names = itertools.count(1)
        # initdb refuses root: run the server as the postgres system user, in a folder it owns.
        self._as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    @classmethod
    def create(cls, host: str = "127.0.0.1", clients: str | None = None) -> PostgresCluster:
        """A cluster not started yet (its port is chosen): `start()` it."""
        bin_dir = find_bin()
        if bin_dir is None:
            raise Unavailable(MISSING)
        if os.geteuid() == 0 and shutil.which("runuser") is None:
            raise Unavailable("running as root needs runuser (util-linux) to start PostgreSQL as `postgres`")
        return cls(bin_dir, host, clients)

    @classmethod
    def start_new(cls) -> PostgresCluster:
        return cls.create().start()

    def start(self) -> PostgresCluster:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _server_tool(self, *argv: str) -> None:
        result = subprocess.run([*self._as_user, *argv], capture_output=True, text=True)
        if result.returncode != 0:
            raise Unavailable(f"{Path(argv[0]).name} failed: {result.stdout}{result.stderr}")

    def _start(self) -> None:
        if self._as_user:
            try:
                shutil.chown(self.root, "postgres")
            except (LookupError, PermissionError) as exc:
                raise Unavailable(f"cannot hand {self.root} to the postgres user: {exc}") from exc
        self._server_tool(str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8")
        if self.clients:
            with (self.data / "pg_hba.conf").open("a") as hba:
                hba.write(f"host all all {self.clients} trust\n")
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses={self.host} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        self._server_tool(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-w", "-l", str(self.root / "log"), "-o", options, "start"
        )

    def psql(self, sql: str, database: str = "postgres") -> str:
        result = subprocess.run(
            [
                *(str(self.bin / "psql"), "-h", self.host, "-p", str(self.port), "-U", "postgres", "-d", database),
                *("-v", "ON_ERROR_STOP=1", "-tAq", "-c", sql),
            ],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise RuntimeError(f"psql failed: {result.stderr}")
        return result.stdout.strip()

    def url(self, database: str) -> str:
        """The URL as users write ASH_DATABASE_URL (the server maps it to asyncpg)."""
        return f"postgresql://postgres@{self.host}:{self.port}/{database}"

    def database(self, template: str | None = None) -> str:
        """A new database (empty, or a copy of `template`), as a URL."""
        name = f"ash_test_{next(self._names)}"
        self.psql(f"CREATE DATABASE {name}" + (f" TEMPLATE {template}" if template else ""))
        return self.url(name)

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            subprocess.run(
                [*self._as_user, str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"],
                capture_output=True,
            )
        shutil.rmtree(self.root, ignore_errors=True)


def asyncpg_url(url: str) -> str:
    """The SQLAlchemy URL the server would use for a `postgresql://` URL."""
    return "postgresql+asyncpg://" + url.split("://", 1)[1]
