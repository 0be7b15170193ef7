"""Writing, deleting and unpacking into a workspace from the server's side never goes through the agent's symlinks,
and what the server writes belongs to the sandbox user."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from ash_server import archive
from ash_server.errors import Invalid, NotFound, PayloadTooLarge
from ash_server.workspace import delete_path, extract_bundle, pack_workspace, write_file

OWNER = (65534, 65534)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.txt").write_text("secret")
    ws = tmp_path / "workspace"
    (ws / "src").mkdir(parents=True)
    (ws / "src" / "main.py").write_text("print('hi')")
    (ws / "dir-escape").symlink_to(tmp_path / "outside")
    (ws / "file-escape").symlink_to(tmp_path / "outside" / "secret.txt")
    os.mkfifo(ws / "fifo")
    return ws


def test_files_are_written_with_their_folders_and_owned_by_the_sandbox_user(root: Path) -> None:
    write_file(root, "new/deeper/file.txt", b"data", OWNER)
    write_file(root, "src/main.py", b"replaced", OWNER)
    assert (root / "new" / "deeper" / "file.txt").read_bytes() == b"data"
    assert (root / "src" / "main.py").read_bytes() == b"replaced"
    for path in (root / "new", root / "new" / "deeper", root / "new" / "deeper" / "file.txt"):
        assert (path.stat().st_uid, path.stat().st_gid) == OWNER


@pytest.mark.parametrize(
    "raw", ["../outside/x", "/etc/passwd", "src/../../x", "dir-escape/x", "dir-escape/secret.txt", "file-escape", ""]
)
def test_writes_that_would_leave_the_workspace_are_refused(root: Path, raw: str) -> None:
    with pytest.raises(Invalid):
        write_file(root, raw, b"pwned", None)
    assert (root.parent / "outside" / "secret.txt").read_text() == "secret"
    assert sorted(p.name for p in (root.parent / "outside").iterdir()) == ["secret.txt"]


def test_a_special_file_is_not_written_to(root: Path) -> None:
    with pytest.raises(Invalid, match="not a regular file"):
        write_file(root, "fifo", b"x", None)
    with pytest.raises(Invalid):
        write_file(root, "src", b"x", None)


def test_deleting_removes_files_trees_and_links_but_never_what_a_link_points_at(root: Path) -> None:
    delete_path(root, "file-escape")
    delete_path(root, "dir-escape")
    assert (root.parent / "outside" / "secret.txt").read_text() == "secret"
    assert not os.path.lexists(root / "dir-escape") and not os.path.lexists(root / "file-escape")
    delete_path(root, "src")
    assert not (root / "src").exists()
    with pytest.raises(NotFound):
        delete_path(root, "src")
    for raw in ("../outside/secret.txt", "/etc/passwd"):
        with pytest.raises(Invalid):
            delete_path(root, raw)


def test_deleting_through_a_symlinked_folder_is_refused(root: Path) -> None:
    with pytest.raises(Invalid):
        delete_path(root, "dir-escape/secret.txt")
    assert (root.parent / "outside" / "secret.txt").exists()


def bundle(*members: tuple[str, bytes, bytes | str | None]) -> bytes:
    """A tar.gz of (name, type, content or link target) entries."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        for name, kind, payload in members:
            info = tarfile.TarInfo(name)
            info.type, info.mode = kind, 0o644
            if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
                info.linkname = str(payload)
                tar.addfile(info)
            elif isinstance(payload, bytes):
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
            else:
                tar.addfile(info)
    return raw.getvalue()


def test_a_bundle_of_files_and_folders_is_unpacked(root: Path) -> None:
    data = bundle(
        ("docs", tarfile.DIRTYPE, None), ("docs/a.md", tarfile.REGTYPE, b"# A"), ("./b.txt", tarfile.REGTYPE, b"b")
    )
    assert extract_bundle(root, data, OWNER, max_bytes=1000) == 2
    assert (root / "docs" / "a.md").read_text() == "# A" and (root / "b.txt").read_text() == "b"
    assert (root / "docs").stat().st_uid == OWNER[0]


@pytest.mark.parametrize(
    ("members", "reason"),
    [
        ([("../escaped.txt", tarfile.REGTYPE, b"x")], "leaves its folder"),
        ([("/tmp/ash-absolute-escape.txt", tarfile.REGTYPE, b"x")], "absolute"),
        ([("link", tarfile.SYMTYPE, "/etc")], "link"),
        ([("hard", tarfile.LNKTYPE, "src/main.py")], "link"),
        ([("dev", tarfile.CHRTYPE, None)], "not a file or directory"),
        ([("fifo2", tarfile.FIFOTYPE, None)], "not a file or directory"),
        ([("dir-escape/secret.txt", tarfile.REGTYPE, b"pwned")], "escapes"),
    ],
)
def test_hostile_bundles_are_refused_whole(root: Path, members: list[tuple[str, bytes, object]], reason: str) -> None:
    before = sorted(p.name for p in root.iterdir())
    data = bundle(("first.txt", tarfile.REGTYPE, b"would be written first"), *members)  # type: ignore[arg-type]
    with pytest.raises(Invalid, match=reason):
        extract_bundle(root, data, None, max_bytes=10_000)
    assert sorted(p.name for p in root.iterdir()) == before  # nothing at all was written
    assert (root.parent / "outside" / "secret.txt").read_text() == "secret"
    assert not Path("/tmp/ash-absolute-escape.txt").exists() and not (root.parent / "escaped.txt").exists()


def test_a_bundle_that_expands_past_the_cap_is_refused(root: Path) -> None:
    data = bundle(("big", tarfile.REGTYPE, b"\0" * 5000))
    with pytest.raises(PayloadTooLarge):
        extract_bundle(root, data, None, max_bytes=4096)
    assert not (root / "big").exists()


def test_garbage_is_not_a_bundle(root: Path) -> None:
    with pytest.raises(Invalid, match=r"not a valid tar\.gz"):
        extract_bundle(root, b"not a tarball at all", None, max_bytes=1000)


def test_the_workspace_archive_keeps_links_as_links(root: Path) -> None:
    out = io.BytesIO()
    pack_workspace(root, out)
    with tarfile.open(fileobj=io.BytesIO(out.getvalue()), mode="r:gz") as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert tar.extractfile(members["src/main.py"]).read() == b"print('hi')"  # type: ignore[union-attr]
    assert members["dir-escape"].issym() and members["file-escape"].issym()
    assert "dir-escape/secret.txt" not in members and "fifo" not in members


def test_copying_a_tree_copies_links_as_links(root: Path, tmp_path: Path) -> None:
    archive.copy_tree(root, tmp_path / "copy")
    assert (tmp_path / "copy" / "src" / "main.py").read_text() == "print('hi')"
    assert os.readlink(tmp_path / "copy" / "file-escape") == str(tmp_path / "outside" / "secret.txt")
    assert not (tmp_path / "copy" / "fifo").exists()
