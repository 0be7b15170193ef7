"""The environment a sandbox starts with: an allowlist, never the server's own environment."""

from __future__ import annotations

import os
from collections.abc import Mapping

# Taken from the server's environment when set. Everything else (cloud credentials, database URLs, the server's
# own secrets) stays out.
PASSTHROUGH = ("LANG", "LC_ALL", "TERM", "TZ", "CLAUDE_CODE_MAX_RETRIES", "CLAUDE_CODE_STREAM_CLOSE_TIMEOUT")
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
# Names an agent or a session may not set: they steer the sandbox itself.
RESERVED_PREFIXES = ("ASH_",)
RESERVED = frozenset(
    {
        "PATH",
        "HOME",
        "CLAUDE_CONFIG_DIR",
        "ANTHROPIC_BASE_URL",
        "ANTHROPIC_API_KEY",
        "ANTHROPIC_AUTH_TOKEN",
        "ANTHROPIC_UNIX_SOCKET",
        "LD_PRELOAD",
        "LD_LIBRARY_PATH",
        "PYTHONPATH",
        "PYTHONHOME",
    }
)


def is_reserved(name: str) -> bool:
    return name in RESERVED or name.startswith(RESERVED_PREFIXES)


def sandbox_environment(
    *,
    injected: Mapping[str, str],
    user: Mapping[str, str],
    host: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Build the environment: host passthrough < user (agent + session) < injected (Ash's own variables)."""
    host_env = os.environ if host is None else host
    env = {name: host_env[name] for name in PASSTHROUGH if name in host_env}
    env.setdefault("LANG", "C.UTF-8")
    env["PATH"] = DEFAULT_PATH
    # Sandboxes never phone home: no telemetry, no update checks, only model calls.
    env["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"] = "1"
    env["DISABLE_AUTOUPDATER"] = "1"
    env.update({k: v for k, v in user.items() if not is_reserved(k)})
    env.update(injected)
    return env
