"""Agents: their rows (their files are versions, agent_versions.py)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import bindparam, delete, select

from .base import StoreBase
from .models import (
    Agent,
)

# Built once (see StoreBase._one): every create and resume runs it.
AGENT_BY_NAME = select(Agent.__table__).where(
    Agent.tenant_id == bindparam("tenant_id"), Agent.name == bindparam("name")
)


class AgentQueries(StoreBase):
    async def get_agent(self, tenant_id: str, name: str) -> Agent | None:
        # Every create and resume reads its agent.
        return await self._one(Agent, AGENT_BY_NAME, tenant_id=tenant_id, name=name)

    async def list_agents(self, tenant_id: str) -> Sequence[Agent]:
        async with self.db() as db:
            return (await db.scalars(select(Agent).where(Agent.tenant_id == tenant_id).order_by(Agent.name))).all()

    async def save_agent(self, agent: Agent) -> Agent:
        async with self.db() as db, db.begin():
            merged = await db.merge(agent)
        return merged

    async def delete_agent(self, tenant_id: str, name: str) -> bool:
        async with self.db() as db, db.begin():
            result = await db.execute(delete(Agent).where(Agent.tenant_id == tenant_id, Agent.name == name))
            return bool(result.rowcount)  # type: ignore[attr-defined]
