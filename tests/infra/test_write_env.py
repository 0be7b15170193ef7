"""infra/boot/write-env.py with the system-style python3 against the fake Google endpoints on loopback: every secret
read checked, nothing written unless all were read, values quoted as systemd's EnvironmentFile= reads them, no value
printed. (The SSM backend runs for real against moto in tests/distribution/test_cloud_boot.py: it needs the AWS CLI.)"""

from __future__ import annotations

import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.fakes.gcp_metadata import FakeGoogleCloud

REPO = Path(__file__).resolve().parents[2]
WRITE_ENV = REPO / "infra" / "boot" / "write-env.py"
VALUES = {"ash-api-key": "ash_key-0123456789abcdef", "ash-database-url": 'postgresql://u:p"a$s\\w`d@db/ash'}


@pytest.fixture
def google() -> Iterator[FakeGoogleCloud]:
    with FakeGoogleCloud(project="p") as fake:
        fake.secrets.update(VALUES)
        yield fake


def write_env(google: FakeGoogleCloud, output: Path, *secrets: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-I", str(WRITE_ENV), str(output), "gcp", "--project", "p", "--prefix", "ash"]
    argv += ["--metadata-url", google.metadata_url, "--secret-manager-url", google.secret_manager_url]
    argv += ["--setting", "ASH_HOST=0.0.0.0", "--setting", 'ASH_NOTE=it\'s "quoted"']
    for secret in secrets:
        argv += ["--secret", secret]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def test_the_settings_and_secrets_are_written_0600_quoted_for_systemd(google: FakeGoogleCloud, tmp_path: Path) -> None:
    output = tmp_path / "ash.env"
    result = write_env(google, output, "ASH_API_KEY=api-key", "ASH_DATABASE_URL=database-url")
    assert result.returncode == 0, result.stderr
    lines = output.read_text().splitlines()[1:]
    assert lines == [
        'ASH_HOST="0.0.0.0"',
        'ASH_NOTE="it\'s \\"quoted\\""',
        'ASH_API_KEY="ash_key-0123456789abcdef"',
        'ASH_DATABASE_URL="postgresql://u:p\\"a\\$s\\\\w\\`d@db/ash"',
    ]
    assert stat.S_IMODE(output.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["ash.env"]  # no temporary file left
    printed = result.stdout + result.stderr
    assert "api-key, database-url" in printed and not any(v in printed for v in VALUES.values())


def test_a_missing_secret_names_itself_and_writes_nothing(google: FakeGoogleCloud, tmp_path: Path) -> None:
    output = tmp_path / "ash.env"
    result = write_env(google, output, "ASH_API_KEY=api-key", "ASH_CREDENTIAL_KEY=credential-key")
    assert result.returncode == 1
    assert "cannot read secret credential-key (Secret Manager secret projects/p/secrets/ash-credential-key)" in (
        result.stderr
    )
    assert "not found or has no versions" in result.stderr
    assert not list(tmp_path.iterdir())
    assert VALUES["ash-api-key"] not in result.stdout + result.stderr


def test_an_earlier_file_stays_when_a_read_fails_and_an_empty_value_is_refused(
    google: FakeGoogleCloud, tmp_path: Path
) -> None:
    output = tmp_path / "ash.env"
    output.write_text('ASH_API_KEY="from the last boot"\n')
    google.secrets["ash-credential-key"] = ""
    result = write_env(google, output, "ASH_API_KEY=api-key", "ASH_CREDENTIAL_KEY=credential-key")
    assert result.returncode == 1
    assert "cannot read secret credential-key" in result.stderr and "its value is empty" in result.stderr
    assert output.read_text() == 'ASH_API_KEY="from the last boot"\n'


def test_without_the_metadata_servers_token_nothing_is_read(google: FakeGoogleCloud, tmp_path: Path) -> None:
    output = tmp_path / "ash.env"
    argv = [sys.executable, "-I", str(WRITE_ENV), str(output), "gcp", "--project", "p", "--prefix", "ash"]
    argv += ["--metadata-url", f"{google.url}/nowhere", "--secret-manager-url", google.secret_manager_url]
    argv += ["--secret", "ASH_API_KEY=api-key"]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1
    assert "cannot read secret api-key" in result.stderr and "no access token from the metadata server" in result.stderr
    assert not output.exists()


def test_the_file_backend_reads_a_json_object_and_names_what_is_missing(tmp_path: Path) -> None:
    secrets, output = tmp_path / "secrets.json", tmp_path / "ash.env"
    secrets.write_text('{"api-key": "ash_key-0123456789abcdef", "database-url": "postgresql://u:p@10.44.1.20/ash"}')
    argv = [sys.executable, "-I", str(WRITE_ENV), str(output), "file", "--path", str(secrets)]
    argv += ["--setting", "ASH_HOST=0.0.0.0", "--secret", "ASH_API_KEY=api-key"]
    result = subprocess.run([*argv, "--secret", "ASH_DATABASE_URL=database-url"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert output.read_text().splitlines()[1:] == [
        'ASH_HOST="0.0.0.0"',
        'ASH_API_KEY="ash_key-0123456789abcdef"',
        'ASH_DATABASE_URL="postgresql://u:p@10.44.1.20/ash"',
    ]
    assert "ash_key-0123456789abcdef" not in result.stdout + result.stderr
    output.unlink()
    missing = subprocess.run([*argv, "--secret", "ASH_INTERNAL_SECRET=internal-secret"], capture_output=True, text=True)
    assert missing.returncode == 1 and not output.exists()
    assert f"cannot read secret internal-secret (key internal-secret of {secrets}): no such key" in missing.stderr
    secrets.unlink()
    absent = subprocess.run(argv, capture_output=True, text=True)
    assert absent.returncode == 1 and "cannot read the file as JSON" in absent.stderr
