"""Coordinator and runner modes refuse to start without what they need, with one clear line saying what."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from pydantic import ValidationError

from ash_server.app import StartupError, check_supported
from ash_server.settings import Settings
from tests.support.server import free_port, short_tempdir

SECRET = "0123456789abcdef0123456789abcdef0123"
PG = "postgresql://ash@127.0.0.1:1/ash"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"mode": "coordinator", "database_url": PG}, "ASH_INTERNAL_SECRET"),
        ({"mode": "runner", "database_url": PG}, "ASH_INTERNAL_SECRET"),
        ({"mode": "coordinator", "internal_secret": SECRET}, "needs a PostgreSQL database"),
        ({"mode": "runner", "internal_secret": SECRET, "database_url": PG}, "ASH_SERVER_URL"),
        (
            {"mode": "coordinator", "internal_secret": SECRET, "database_url": PG, "tls_cert": "/nonexistent.pem"},
            "needs all three of ASH_TLS_CERT, ASH_TLS_KEY and ASH_TLS_CA",
        ),
    ],
)
def test_modes_refuse_to_start_without_what_they_need(values: dict[str, Any], message: str) -> None:
    with pytest.raises(StartupError, match=message):
        check_supported(Settings(data_dir=short_tempdir(), **values))


def test_a_short_internal_secret_is_refused() -> None:
    with pytest.raises(ValidationError, match="32"):
        Settings(internal_secret="only-twenty-chars-xx")


def test_the_server_process_says_why_and_exits() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ash_server"],
        env={
            "PATH": "/usr/bin:/bin",
            "ASH_DATA_DIR": str(short_tempdir() / "data"),
            "ASH_PORT": str(free_port()),
            "ASH_MODE": "coordinator",
            "ASH_DATABASE_URL": PG,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "cannot start: ASH_MODE=coordinator needs ASH_INTERNAL_SECRET" in result.stdout + result.stderr
