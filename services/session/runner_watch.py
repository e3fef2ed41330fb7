"""Runners holding a batch's calls, watched (DESIGN §6): a runner killed mid-call is noticed
within seconds, not after the tool queue's ack wait, and its calls are reported to the model.

Every PING_S the session asks each runner that announced one of its running calls which of them
it still holds (`PingRunner` on `sc.tool.direct.<runner_id>`). No responders: the runner is gone
and its calls are lost at once. A runner that stops answering for MISSES pings in a row, or that
no longer holds a call on two pings in a row (a result is on its way for one ping's time), loses
those calls too.
"""

import asyncio
import logging
from typing import TYPE_CHECKING

import nats.errors

from shared import bus, subjects
from shared.ids import SessionId, ToolCallId
from shared.messages.tools import RUNNER_ALIVE, PingRunner, ProbePool

if TYPE_CHECKING:
    from services.session.tool_batch import Batch

PING_S = 5.0
PING_TIMEOUT_S = 2.0
MISSES = 3
LOST = (
    "its runner stopped before the call finished (it was not re-run). Check its effects before"
    " repeating it."
)
log = logging.getLogger(__name__)


class Watch:
    """The started calls of one batch and the runners that hold them."""

    def __init__(self, conn: bus.Connection, session_id: SessionId) -> None:
        self.conn = conn
        self.session_id = session_id
        self.holders: dict[ToolCallId, str] = {}
        self.next_ping = asyncio.get_running_loop().time() + PING_S
        self._misses: dict[str, int] = {}
        self._absent: set[ToolCallId] = set()

    def started(self, call_id: ToolCallId, runner_id: str) -> None:
        self.holders[call_id] = runner_id

    def forget(self, call_id: ToolCallId) -> None:
        self.holders.pop(call_id, None)
        self._absent.discard(call_id)

    async def lost(self) -> list[ToolCallId]:
        """Ping the holders if it is time; the calls whose runner is gone or dropped them."""
        now = asyncio.get_running_loop().time()
        if now < self.next_ping or not self.holders:
            return []
        self.next_ping = now + PING_S
        by_runner: dict[str, list[ToolCallId]] = {}
        for call_id, runner_id in self.holders.items():
            by_runner.setdefault(runner_id, []).append(call_id)
        found = await asyncio.gather(*(self._ping(r, calls) for r, calls in by_runner.items()))
        gone = [call_id for calls in found for call_id in calls]
        for call_id in gone:
            self.forget(call_id)
        return gone

    async def _ping(self, runner_id: str, calls: list[ToolCallId]) -> list[ToolCallId]:
        ping = PingRunner(session_id=self.session_id, call_ids=calls)
        subject = subjects.tool_runner(runner_id)
        try:
            reply = await self.conn.nc.request(subject, bus.encode(ping), timeout=PING_TIMEOUT_S)
        except nats.errors.NoRespondersError:
            log.warning("runner %s is gone; %d call(s) lost", runner_id, len(calls))
            return calls
        except (TimeoutError, nats.errors.Error) as exc:
            self._misses[runner_id] = misses = self._misses.get(runner_id, 0) + 1
            log.warning("runner %s did not answer a ping (%d): %r", runner_id, misses, exc)
            return calls if misses >= MISSES else []
        self._misses.pop(runner_id, None)
        alive = await bus.decoded(self.conn, RUNNER_ALIVE, reply.data, subject)
        if alive is None:
            return []
        missing = {call_id for call_id in calls if call_id not in alive.holding}
        lost = [call_id for call_id in calls if call_id in missing & self._absent]
        self._absent = (self._absent - set(calls)) | missing
        return lost


async def is_served(conn: bus.Connection, pool: str) -> bool:
    """Does any runner serve `pool` now? Only "no responders" says no: a slow answer is a yes."""
    try:
        await conn.nc.request(
            subjects.tool_probe(pool), bus.encode(ProbePool()), timeout=PING_TIMEOUT_S
        )
    except nats.errors.NoRespondersError:
        return False
    except (TimeoutError, nats.errors.Error):
        return True
    return True


def no_runner(batch: "Batch") -> str:
    pool = batch.workspace.pool
    where = f"remote {batch.workspace.remote}" if batch.workspace.remote else f"pool {pool}"
    return f"no tool runner serves {where} right now; try again later"
