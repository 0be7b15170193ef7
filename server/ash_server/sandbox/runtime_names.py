"""The sandbox runtimes by name, and which one a sandbox gets: its agent's config `runtime`, else its tenant's
(ASH_TENANT_RUNTIMES), else the server's (ASH_SANDBOX_RUNTIME). No imports of the server: settings read it."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any


class Runtime(enum.StrEnum):
    BWRAP = "bwrap"  # bubblewrap: namespaces on the host kernel (bwrap.py)
    GVISOR = "gvisor"  # runsc: gVisor's user-space kernel (gvisor.py)


NAMES = tuple(r.value for r in Runtime)


def parse_tenant_runtimes(value: str) -> dict[str, str]:
    """`tenant=runtime,*=runtime` as a dict; ValueError with the reason."""
    found: dict[str, str] = {}
    for entry in (e.strip() for e in value.split(",")):
        if not entry:
            continue
        tenant, sep, runtime = (part.strip() for part in entry.partition("="))
        if not sep or not tenant:
            raise ValueError(f"{entry!r} is not tenant=runtime")
        if runtime not in NAMES:
            raise ValueError(f"{entry!r}: the runtime must be one of {', '.join(NAMES)}")
        found[tenant] = runtime
    return found


class RuntimeChoiceError(ValueError):
    """An agent config's `runtime` that is malformed or that its tenant may not use."""


def tenant_runtime(tenants: Mapping[str, str], tenant_id: str) -> str | None:
    return tenants.get(tenant_id, tenants.get("*"))


def choose(config: Mapping[str, Any], tenant_id: str, tenants: Mapping[str, str]) -> str | None:
    """The runtime a sandbox of an agent with this config must have (None: the server's default); RuntimeChoiceError
    if the config asks for one that does not exist or that its tenant is held to another."""
    asked = config.get("runtime")
    required = tenant_runtime(tenants, tenant_id)
    if asked is None:
        return required
    if not isinstance(asked, str) or asked not in NAMES:
        raise RuntimeChoiceError(f"runtime must be one of {', '.join(NAMES)} (got {asked!r})")
    if required is not None and asked != required:
        raise RuntimeChoiceError(
            f"tenant {tenant_id!r} runs its sandboxes under {required} only (ASH_TENANT_RUNTIMES); "
            f"runtime {asked!r} is not allowed"
        )
    return asked
