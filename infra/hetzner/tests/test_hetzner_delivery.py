"""What infra/hetzner runs over SSH and copies there, run here for real: the command that writes a secrets file, and
the release zip."""

from __future__ import annotations

import stat
import subprocess
import zipfile
from pathlib import Path


def test_the_secrets_command_writes_its_stdin_0600_in_one_rename_then_runs_its_hook(tmp_path: Path) -> None:
    from ash_hetzner.delivery import write_file

    target = tmp_path / "etc" / "ash" / "secrets.json"
    hook = tmp_path / "hook-ran"
    command = write_file(str(target), then=f"touch {hook}")
    secret = '{"api-key": "ash_key-\'quoted\' $(not run)"}'
    result = subprocess.run(["sh", "-c", command], input=secret, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert target.read_text() == secret
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert stat.S_IMODE(target.parent.stat().st_mode) == 0o700
    assert sorted(p.name for p in target.parent.iterdir()) == ["secrets.json"]  # no partial file left
    assert hook.exists() and secret not in command
    # A second delivery replaces the file whole.
    again = subprocess.run(["sh", "-c", command], input="{}", capture_output=True, text=True, check=False)
    assert again.returncode == 0 and target.read_text() == "{}"


def test_the_release_zip_is_reproducible_and_holds_what_install_ash_needs(tmp_path: Path) -> None:
    from ash_hetzner.release import release_zip
    from ash_infra.source import source_archive

    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
    first, digest = release_zip(folder=tmp_path / "a")
    second, _ = release_zip(folder=tmp_path / "b")
    assert first != second
    assert first.read_bytes() == second.read_bytes() and digest == source_archive()[1]
    with zipfile.ZipFile(first) as archive:
        names = set(archive.namelist())
        mode = archive.getinfo("infra/boot/install-ash.sh").external_attr >> 16
    assert {"pyproject.toml", "requirements.lock", "systemd/ash.service", "infra/boot/write-env.py"} <= names
    assert mode & 0o777 in (0o644, 0o755) and not any("__pycache__" in n for n in names)
    unpacked = tmp_path / "src"
    subprocess.run(["python3", "-m", "zipfile", "-e", str(first), str(unpacked)], check=True)
    assert (unpacked / "infra/boot/install-ash.sh").read_text().startswith("#!/bin/bash")


def test_the_database_password_is_quoted_for_sql() -> None:
    from ash_hetzner.delivery import sql_password

    assert sql_password("it's \\ a") == "ALTER ROLE ash PASSWORD 'it''s \\ a';\n"
