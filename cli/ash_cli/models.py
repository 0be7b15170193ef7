"""The shapes of the objects the Ash API returns (camelCase, as on the wire). Typing only: nothing is validated."""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict

__all__ = ["Agent", "AgentVersion", "Health", "Message", "PoolStats", "Session"]


class Agent(TypedDict):
    id: str
    name: str
    tenantId: str
    version: int
    path: str
    env: dict[str, str]
    config: NotRequired[dict[str, Any]]
    createdAt: str
    updatedAt: str


class AgentVersion(TypedDict):
    id: str
    agentName: str
    versionNumber: int
    name: str
    isActive: bool
    systemPrompt: str | None
    releaseNotes: str | None
    fileCount: NotRequired[int]
    createdAt: str
    activatedAt: NotRequired[str | None]


class Session(TypedDict):
    id: str
    tenantId: str
    agentName: str
    agentVersion: NotRequired[int]
    sandboxId: str
    status: str
    runnerId: str | None
    parentSessionId: str | None
    createdAt: str
    lastActiveAt: str


class Message(TypedDict):
    id: str
    sessionId: str
    tenantId: str
    role: str
    content: str
    sequence: int
    createdAt: str


class PoolStats(TypedDict, total=False):
    total: int
    cold: int
    warming: int
    warm: int
    waiting: int
    running: int
    maxCapacity: int
    resumeWarmHits: int
    resumeColdHits: int
    preWarmHits: int


class Health(TypedDict):
    status: str
    version: str
    coordinatorId: str
    activeSessions: int
    activeSandboxes: int
    remoteRunners: int
    uptime: float
    isolation: NotRequired[str]
    modelKey: NotRequired[bool]
    pool: PoolStats
