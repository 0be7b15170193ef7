"""What a sandbox was made for, as one opaque key: a warm sandbox goes only to a session whose key is the same.

Everything that shapes a sandbox goes in: the tenant, the agent and its exact version (id, version, last update),
the agent's environment and config (limits, network, runtime: a gVisor sandbox never serves a bubblewrap agent),
and the session's whole configuration (SDK options such as model, system prompt, permission mode, tools and MCP
servers; `extraEnv`; `credentialId`). The runtime a tenant is held to (ASH_TENANT_RUNTIMES) and the server's
default are settings of the process, the same for every key it makes. Keys are compared for equality only, so
anything that differs, even in a way that would not matter, means a fresh sandbox. They are HMACs under a key that
lives and dies with the process: they hold agent environment values, so they are never stored nor shown.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from typing import Any

from ..store.models import Agent

_KEY = secrets.token_bytes(32)
# Pool sizing is not part of what a sandbox looks like.
IGNORED_AGENT_CONFIG = frozenset({"warmPoolSize"})


def canonical(agent: Agent, session_config: dict[str, Any]) -> bytes:
    document = {
        "tenant": agent.tenant_id,
        "agent": agent.name,
        "agentId": str(agent.id),
        "version": agent.version,
        "updatedAt": agent.updated_at.isoformat() if agent.updated_at else None,
        "agentEnv": agent.env,
        "agentConfig": {k: v for k, v in agent.config.items() if k not in IGNORED_AGENT_CONFIG},
        "session": session_config,
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":"), default=str).encode()


def profile_key(agent: Agent, session_config: dict[str, Any]) -> str:
    return hmac.new(_KEY, canonical(agent, session_config), hashlib.sha256).hexdigest()
