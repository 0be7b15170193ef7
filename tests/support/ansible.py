"""How the tests run Ansible: the checkout's ansible.cfg, a private home and temp folder, no colour."""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ANSIBLE = REPO / "ansible"
BIN = Path(sys.executable).parent


def ansible_env(home: Path, base: dict[str, str] | None = None) -> dict[str, str]:
    """`base` (default: this process's environment) with Ansible pointed at the checkout and at `home`."""
    return {
        **(os.environ if base is None else base),
        "PATH": f"{BIN}:{os.environ['PATH']}",
        "ANSIBLE_CONFIG": str(ANSIBLE / "ansible.cfg"),
        "ANSIBLE_HOME": str(home),
        "ANSIBLE_LOCAL_TEMP": str(home / "tmp"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
    }
