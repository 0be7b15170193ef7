"""Reading a workspace from the server's side never follows the agent's symlinks out of it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ash_server.errors import Invalid, NotFound, PayloadTooLarge
from ash_server.workspace import list_files, read_file


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "outside.txt").write_text("secret")
    ws = tmp_path / "workspace"
    (ws / "src").mkdir(parents=True)
    (ws / "src" / "main.py").write_text("print('hi')")
    (ws / "node_modules" / "x").mkdir(parents=True)
    (ws / ".cache").mkdir()
    (ws / ".cache" / "c").write_text("c")
    (ws / "escape").symlink_to(tmp_path / "outside.txt")
    (ws / "dir-escape").symlink_to(tmp_path)
    (ws / "inside").symlink_to("src/main.py")
    os.mkfifo(ws / "fifo")
    return ws


def test_listing_has_regular_files_only(root: Path) -> None:
    assert [f.path for f in list_files(root)] == [".cache/c", "src/main.py"]
    assert [f.path for f in list_files(root, include_hidden=False)] == ["src/main.py"]


def test_reads_stay_inside(root: Path) -> None:
    assert read_file(root, "src/main.py", max_bytes=100) == b"print('hi')"
    assert read_file(root, "inside", max_bytes=100) == b"print('hi')"
    for raw in ("escape", "dir-escape/outside.txt", "../outside.txt", "/etc/passwd", "src/../../outside.txt"):
        with pytest.raises(Invalid):
            read_file(root, raw, max_bytes=100)
    with pytest.raises(Invalid, match="not a regular file"):
        read_file(root, "fifo", max_bytes=100)  # and does not hang
    with pytest.raises(NotFound):
        read_file(root, "src/missing.py", max_bytes=100)
    with pytest.raises(PayloadTooLarge):
        read_file(root, "src/main.py", max_bytes=3)


def test_a_symlink_swapped_in_after_the_check_is_not_followed(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The agent replaces a checked directory with a symlink between the check and the open."""
    import ash_server.workspace as workspace

    def confine_then_swap(base: Path, raw: str) -> Path:
        checked = base.resolve() / raw
        (root / "src").rename(root / "src.old")
        (root / "src").symlink_to(root.parent)
        return checked

    monkeypatch.setattr(workspace, "confine", confine_then_swap)
    with pytest.raises(Invalid, match="escapes"):
        read_file(root, "src/outside.txt", max_bytes=100)


def test_a_workspace_that_is_itself_a_symlink_is_refused(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "f").write_text("x")
    (tmp_path / "ws").symlink_to(tmp_path / "real")
    assert list_files(tmp_path / "ws") == []
    with pytest.raises((Invalid, NotFound)):
        read_file(tmp_path / "ws", "f", max_bytes=10)
