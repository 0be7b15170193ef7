from __future__ import annotations

import threading
from pathlib import Path

import pytest

from ash_server.errors import Conflict, Invalid
from ash_server.paths import confine, relative_path


@pytest.mark.parametrize("bad", ["", "/etc/passwd", "../x", "a/../../x", "a\\..\\x", "a/\x00", "~/x", "."])
def test_relative_path_refuses_escapes(bad: str) -> None:
    with pytest.raises(Invalid):
        relative_path(bad)


def test_relative_path_normalises_dots() -> None:
    assert str(relative_path("./a/./b.txt")) == "a/b.txt"
    assert str(relative_path("a//b")) == "a/b"


def test_confine_refuses_symlinks_out(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "ok.txt").write_text("ok")
    (root / "out").symlink_to(tmp_path)
    (root / "inside").symlink_to(root / "sub")
    assert confine(root, "sub/ok.txt") == (root / "sub" / "ok.txt").resolve()
    assert confine(root, "inside/ok.txt") == (root / "sub" / "ok.txt").resolve()
    with pytest.raises(Invalid, match="escapes"):
        confine(root, "out/anything")


def test_confine_refuses_symlink_loops_with_a_400(tmp_path: Path) -> None:
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    with pytest.raises(Invalid, match="loops"):
        confine(tmp_path, "a/x")


def test_confine_under_symlink_swaps_answers_a_path_or_a_clear_error(tmp_path: Path) -> None:
    """An agent swapping a link (to a folder, to a file, away) while the server resolves through it made
    `resolve()` raise EINVAL: a 500. Every outcome now is a path inside the root, or Invalid / Conflict."""
    root = tmp_path / "root"
    (root / "dir" / "deep").mkdir(parents=True)
    (root / "file").write_text("x")
    link = root / "swap"
    stop = threading.Event()

    def swapper() -> None:
        targets = ["dir", "file", "dir/deep", "missing", "swap"]
        i = 0
        while not stop.is_set():
            tmp = root / f".swap{i % 2}"
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(targets[i % len(targets)])
            tmp.replace(link)
            i += 1

    thread = threading.Thread(target=swapper)
    thread.start()
    outcomes: set[str] = set()
    try:
        for _ in range(3000):
            try:
                target = confine(root, "swap/deep/x")
                assert target == root.resolve() or root.resolve() in target.parents, target
                outcomes.add("path")
            except (Invalid, Conflict) as exc:
                outcomes.add(type(exc).__name__)
    finally:
        stop.set()
        thread.join()
    assert "path" in outcomes, outcomes


@pytest.mark.parametrize("long", ["a" * 256, "d/" + "é" * 128, "/".join(["d"] * 2049)])
def test_relative_path_refuses_what_the_file_system_cannot_name(long: str) -> None:
    with pytest.raises(Invalid, match="longer than"):
        relative_path(long)
    assert str(relative_path("a" * 255)) == "a" * 255
