"""Whether a sandbox loads the bridge and the SDK from bytecode the install compiled (issue 16): the sandbox user
cannot write a bytecode cache, so a module without one is compiled again, in memory, at every sandbox start.

`IMPORTS_IN_SANDBOX` runs through POST /api/sessions/{id}/exec: it finds the bridge's interpreter (argv[0] of the
`-m ash_bridge` process, the virtualenv's python) and imports what a bridge start imports with `python -I -v`,
whose stderr names every module compiled from source (`# code object from /x.py`, unquoted) rather than read
from its cache (`# code object from '/x.pyc'`)."""

from __future__ import annotations

import re

IMPORTS_IN_SANDBOX = r"""
python=
for cmdline in /proc/[0-9]*/cmdline; do
  # The interpreter's own command line, not bwrap's (which holds it as its last arguments).
  if tr '\0' ' ' <"$cmdline" 2>/dev/null | grep -qE -- '^[^ ]*/python[0-9.]* (-[A-Za-z]+ )*-m ash_bridge'; then
    python=$(head -z -n 1 "$cmdline" | tr -d '\0')
    break
  fi
done
[ -n "$python" ] || { echo "no bridge process in this sandbox" >&2; exit 3; }
echo "$python"
"$python" -I -v -c 'import ash_bridge.main, claude_agent_sdk' 2>&1 >/dev/null | grep '^# code object from '
"""

_FROM_SOURCE = re.compile(r"^# code object from (\S+\.py)$", re.MULTILINE)
_FROM_CACHE = re.compile(r"^# code object from '(\S+\.pyc)'$", re.MULTILINE)


def compiled_from_source(exec_stdout: str) -> tuple[list[str], list[str]]:
    """(modules compiled from source, modules read from their cache) in the output of IMPORTS_IN_SANDBOX."""
    return _FROM_SOURCE.findall(exec_stdout), _FROM_CACHE.findall(exec_stdout)


def check_bridge_bytecode(exec_result: dict[str, object]) -> None:
    """Assert, from the exec result of IMPORTS_IN_SANDBOX, that nothing was compiled and that the SDK was imported."""
    stdout = str(exec_result["stdout"])
    assert exec_result["exitCode"] == 0, exec_result
    recompiled, cached = compiled_from_source(stdout)
    assert any("/ash_bridge/" in path for path in cached), stdout[:2000]
    assert any("/claude_agent_sdk/" in path for path in cached), stdout[:2000]
    assert not recompiled, (
        f"{len(recompiled)} modules compiled at import in the sandbox (no .pyc from the install), e.g. "
        f"{recompiled[:5]}; the install must compile bytecode (scripts/install.sh compiles it)"
    )
