"""Migrations build exactly the schema the models describe, on SQLite and on PostgreSQL."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command

from ash_server.store.database import alembic_config
from tests.support.server import free_port

PG_BIN = max(Path("/usr/lib/postgresql").glob("*/bin"), default=Path("/usr/lib/postgresql/missing/bin"))


def upgrade_and_check(url: str) -> None:
    config = alembic_config(url)
    command.upgrade(config, "head")
    command.check(config)  # raises if autogenerate would emit anything: models and migrations agree


def test_sqlite_schema_matches_the_models(tmp_path: Path) -> None:
    upgrade_and_check(f"sqlite+aiosqlite:///{tmp_path / 'ash.db'}")


def test_downgrade_to_empty_and_back(tmp_path: Path) -> None:
    config = alembic_config(f"sqlite+aiosqlite:///{tmp_path / 'ash.db'}")
    command.upgrade(config, "head")
    command.downgrade(config, "base")
    upgrade_and_check(f"sqlite+aiosqlite:///{tmp_path / 'ash.db'}")


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    if not (PG_BIN / "initdb").exists():
        pytest.skip("PostgreSQL binaries not found (apt-get install postgresql)")
    root = Path(tempfile.mkdtemp(prefix="ash-pg-"))
    shutil.chown(root, "postgres")
    data, port = root / "data", free_port()

    def run(*argv: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *argv], check=True, capture_output=True)

    run(str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres")
    run(
        str(PG_BIN / "pg_ctl"),
        "-D",
        str(data),
        "-w",
        "-l",
        str(root / "log"),
        "-o",
        f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off",
        "start",
    )
    try:
        yield f"postgresql+asyncpg://postgres@127.0.0.1:{port}/postgres"
    finally:
        run(str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="starting PostgreSQL here needs root (runuser)")
def test_postgresql_schema_matches_the_models(postgres_url: str) -> None:
    upgrade_and_check(postgres_url)
