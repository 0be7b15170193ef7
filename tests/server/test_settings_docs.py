"""docs/configuration.md lists exactly the variables Settings reads."""

from __future__ import annotations

import re
from pathlib import Path

from ash_server.settings import Settings

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def setting_names() -> set[str]:
    names = set()
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        names.add(alias.choices[0] if alias is not None else f"ASH_{name.upper()}")  # type: ignore[union-attr]
    return names


def documented_names() -> set[str]:
    server_table = DOC.read_text().split("## Passed into sandboxes")[0]
    return set(re.findall(r"^\| `([A-Z][A-Z0-9_]*)` \|", server_table, flags=re.MULTILINE))


def test_every_setting_is_documented_and_nothing_else() -> None:
    assert setting_names() == documented_names()


def test_every_field_has_a_description() -> None:
    assert all(field.description for field in Settings.model_fields.values())
