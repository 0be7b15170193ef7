"""The queue worker: claims enqueued prompts from the database and runs each as one turn (`run_prompt`).

Every server's worker works the same table: a claim is atomic and leased (store/queue.py), so items run once per
claim, one at a time per session, and an item whose server died is claimed again (at-least-once). An item for an
agent gets a session of its own, as the reference does; its id is recorded at once, so a retry continues it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta

from ..errors import AshError, CapacityExhausted, Conflict, Gone, Invalid, NotFound
from ..states import SessionStatus
from ..store.queue import QueueItem, QueueRepository
from .prompt import PromptSessions

log = logging.getLogger(__name__)

MAX_BACKOFF = timedelta(minutes=5)


class TurnFailed(Exception):
    """The turn ran and ended in an error: worth another attempt."""


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    worker_id: str
    concurrency: int = 2
    poll_s: float = 1.0
    retry_delay_s: float = 5.0
    lease_s: float = 60.0


def backoff(options: WorkerOptions, failures: int) -> timedelta:
    """The wait before attempt `failures + 1`: the base delay doubled per failure so far, capped."""
    return min(timedelta(seconds=options.retry_delay_s * 2 ** max(failures - 1, 0)), MAX_BACKOFF)


class QueueWorker:
    def __init__(self, repo: QueueRepository, sessions: PromptSessions, options: WorkerOptions) -> None:
        self.repo = repo
        self.sessions = sessions
        self.options = options
        self._running: set[asyncio.Task[None]] = set()
        self._freed = asyncio.Event()

    @property
    def lease(self) -> timedelta:
        return timedelta(seconds=self.options.lease_s)

    async def run(self) -> None:
        """Work the queue until cancelled; a cancelled worker gives its running items back."""
        try:
            with contextlib.suppress(Exception):
                taken = await self.repo.expire_claims_of(self.options.worker_id)
                if taken:
                    log.info("queue: %d item(s) this server was running when it stopped will run again", taken)
            while True:
                try:
                    await self.poll_once()
                except Exception:
                    log.exception("queue: poll failed")  # the database may be back next time
                self._freed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._freed.wait(), self.options.poll_s)
        finally:
            for task in list(self._running):
                task.cancel()
            if self._running:
                await asyncio.gather(*self._running, return_exceptions=True)

    async def poll_once(self) -> int:
        """Reap dead claims and start as many items as there are free slots; returns how many started."""
        await self.repo.reap()
        started = 0
        while len(self._running) < self.options.concurrency:
            item = await self.repo.claim(self.options.worker_id, self.lease)
            if item is None:
                break
            task = asyncio.create_task(self.work(item), name=f"queue-{item.id}")
            self._running.add(task)
            task.add_done_callback(self._done)
            started += 1
        return started

    def _done(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._freed.set()

    async def drain(self) -> None:
        """Wait for the items started so far (tests)."""
        while self._running:
            await asyncio.gather(*list(self._running), return_exceptions=True)

    async def work(self, item: QueueItem) -> None:
        """Run one claimed item and record how it ended."""
        me = self.options.worker_id
        renewer = asyncio.create_task(self._renew(item))
        try:
            answer = await self._run(item)
        except asyncio.CancelledError:
            # Shutting down: the item was not done; the next worker runs it (its turn may have to run again).
            with contextlib.suppress(Exception):
                await asyncio.shield(self.repo.release(item, me))
            raise
        except Conflict as exc:
            # The session is busy with a turn a client sent: wait for it, no attempt lost.
            log.info("queue: item %s waits, %s", item.id, exc.message)
            await self.repo.release(item, me, delay=timedelta(seconds=self.options.poll_s))
        except CapacityExhausted as exc:
            # Every sandbox (or, on a coordinator, every runner) is busy or none is live yet: not the item's
            # fault, so no attempt is counted; it waits a retry delay.
            log.info("queue: item %s waits for capacity: %s", item.id, exc.message)
            await self.repo.release(item, me, delay=timedelta(seconds=self.options.retry_delay_s))
        except (NotFound, Gone, Invalid) as exc:
            log.warning("queue: item %s cannot run: %s", item.id, exc.message)
            await self.repo.fail(item, me, exc.message, backoff=None)
        except Exception as exc:
            message = exc.message if isinstance(exc, AshError) else str(exc) or type(exc).__name__
            log.warning("queue: item %s failed (attempt %d): %s", item.id, item.retry_count + 1, message)
            await self.repo.fail(item, me, message, backoff=backoff(self.options, item.retry_count + 1))
        else:
            if not await self.repo.complete(item, me, answer):
                log.warning("queue: item %s finished after its claim was lost; its result is dropped", item.id)
        finally:
            renewer.cancel()

    async def _renew(self, item: QueueItem) -> None:
        while True:
            await asyncio.sleep(self.options.lease_s / 3)
            try:
                if not await self.repo.renew(item, self.options.worker_id, self.lease):
                    log.warning("queue: item %s: claim lost (cancelled or taken over)", item.id)
                    return
            except Exception:
                log.exception("queue: could not renew the claim of item %s", item.id)

    async def _run(self, item: QueueItem) -> str:
        session_id = item.session_id
        if session_id is None:
            session_id = await self.sessions.open(item.tenant_id, item.agent_name)
            await self.repo.set_session(item, self.options.worker_id, session_id)
            item.session_id = session_id
        await self._ensure_active(item.tenant_id, session_id)
        outcome = await self.sessions.prompt(item.tenant_id, session_id, item.prompt)
        if not outcome.ok:
            raise TurnFailed(outcome.error)
        return outcome.answer

    async def _ensure_active(self, tenant_id: str, session_id: uuid.UUID) -> None:
        # A session the server restart paused, or the idle sweep stopped, continues.
        if SessionStatus(await self.sessions.status(tenant_id, session_id)).resumable:
            await self.sessions.resume(tenant_id, session_id)
