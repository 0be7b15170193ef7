from __future__ import annotations

from pathlib import Path

import pytest

from ash_server.errors import Invalid
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
