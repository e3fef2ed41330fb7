"""Cancelling a running call on request (SPEC §3.6): `sc.ctl.tool.cancel.<session>.<call>`.

Every runner of every pool listens (core, no queue group); only the one running the call acts: it
cancels the call's task, which ends its process group (SIGTERM, SIGKILL 1.5 s later), answers the
request, and publishes the call's ToolFinished as `cancelled`. Call ids are unique only within a
session, so the subject names both.
"""

import asyncio
import logging
from pathlib import Path
from typing import Any

from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from services.tools import removal
from services.tools.context import RunnerContext
from shared import bus, subjects
from shared.messages.tools import CANCEL_CALL, END_WORK, CallCancelled

CallKey = tuple[str, str]  # (session id, call id)
log = logging.getLogger(__name__)


class Running:
    """The calls this runner has in hand, and which of them were cancelled on request."""

    def __init__(self) -> None:
        self.tasks: dict[CallKey, asyncio.Future[Any]] = {}
        self.cancelled: set[CallKey] = set()
        self.waits: dict[CallKey, asyncio.Event] = {}  # set to cut an interruptible wait short

    def track(self, key: CallKey, task: asyncio.Future[Any], cut_short: asyncio.Event) -> None:
        self.tasks[key] = task
        self.waits[key] = cut_short

    def forget(self, key: CallKey) -> None:
        self.tasks.pop(key, None)
        self.waits.pop(key, None)
        self.cancelled.discard(key)

    def cut_short(self, key: CallKey) -> bool:
        """End the call's wait (a follow-up came); its work goes on. Whether it is held here."""
        wait = self.waits.get(key)
        if wait is None:
            return False
        wait.set()
        return True

    def cancel(self, key: CallKey) -> bool:
        task = self.tasks.get(key)
        if task is None or task.done():
            return False
        self.cancelled.add(key)
        task.cancel()
        return True


async def listen(conn: bus.Connection, running: Running, runner_id: str) -> Subscription:
    """Answer cancel requests for the calls this runner holds; ignore the others'."""

    async def answer(msg: Msg) -> None:
        request = await bus.decoded(conn, CANCEL_CALL, msg.data, msg.subject)
        if request is None:
            return
        key = (request.session_id, request.call_id)
        if request.wait_only:
            if running.cut_short(key) and msg.reply:
                reply = CallCancelled(
                    session_id=request.session_id, call_id=request.call_id, runner_id=runner_id
                )
                await msg.respond(bus.encode(reply))
            return
        if not running.cancel(key):
            return
        log.info("call %s cancelled on request", request.call_id)
        reply = CallCancelled(
            session_id=request.session_id, call_id=request.call_id, runner_id=runner_id
        )
        if msg.reply:
            await msg.respond(bus.encode(reply))

    return await conn.nc.subscribe(subjects.TOOL_CANCEL_ALL, cb=answer)


async def listen_for_ends(
    conn: bus.Connection, context: RunnerContext, workdir: Path, pools: tuple[str, ...]
) -> Subscription:
    """End a conversation's shell sessions and downloads here when it starts afresh (`/new`);
    when it was removed, also move its workspace aside if one of `pools` holds it (SPEC §2.1)."""

    async def end(msg: Msg) -> None:
        request = await bus.decoded(conn, END_WORK, msg.data, msg.subject)
        if request is not None:
            await context.end_conversation(request.conversation_id)
            log.info("ended the shell sessions and downloads of %s", request.conversation_id)
            await removal.move_removed(workdir, request, pools)

    return await conn.nc.subscribe(subjects.TOOL_END_ALL, cb=end)
