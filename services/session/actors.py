"""The session actors of this process (DESIGN §5): one per session whose lease it holds.

A wake (SC_WAKE) makes a replica try the session's lease; the one that takes it runs the actor
(`actor.py`). The pool serves the control lane of every session (nudges and status queries for
its actors; a status read from the head for sessions nobody holds) and watches the leases: a
session whose lease expired (its owner died without letting go) is woken again.
"""

import asyncio
import contextlib
import gc
import logging
from pathlib import Path

import httpx
import msgspec
import nats.errors
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue

from services.session import heads, lease, status
from services.session.actor import SessionActor
from services.session.model_calls import Cooldowns, MediaSource
from shared import bus, memory, subjects
from shared.config import Config
from shared.ids import SessionId
from shared.messages.session import (
    CONTROL,
    ConversationSettings,
    NudgeSession,
    NudgeTaken,
    StatusQuery,
    WakeSession,
)
from shared.messages.tools import CATALOG_REPLY, ListTools, ToolCatalog

CATALOG_TIMEOUT_S = 5.0
CATALOG_TTL_S = 30.0
log = logging.getLogger(__name__)


class Stores(msgspec.Struct, frozen=True, kw_only=True):
    """The buckets the actors keep their ownership and heads in."""

    leases: KeyValue
    heads: KeyValue


class ActorPool:
    """Owns the actors of this process: one per session whose lease it holds."""

    def __init__(
        self,
        conn: bus.Connection,
        config: Config,
        http: httpx.AsyncClient,
        stores: Stores,
        media: MediaSource | None = None,
    ) -> None:
        self.conn = conn
        self.config = config
        self.http = http
        self.stores = stores
        self.owner = lease.Owner(owner_id="-", pid=0)
        self.actors: dict[SessionId, SessionActor] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.catalogs: dict[tuple[str, ...], tuple[float, ToolCatalog]] = {}
        self.cooldowns = Cooldowns()  # models that failed lately (SPEC §7.3)
        self.media = media  # attachments' bytes for model calls (SPEC §8.2)
        self.workdir = Path()  # the API logs go under it (SPEC §7.6)

    async def wake(self, message: WakeSession, envelope: bus.Envelope) -> None:
        """The wake handler: nudge the live actor, or take the lease and start one."""
        session_id = message.session_id
        actor = self.actors.get(session_id)
        if actor is not None:
            actor.signal(message.seq)
            return
        await self.take(session_id)

    async def take(self, session_id: SessionId) -> None:
        """Take the session's lease and start its actor, unless a live owner holds it. A
        restarted slot takes its own sessions so (its lease is its own at once), not through a
        wake that another instance could get and have to leave until the lease expired."""
        held = await lease.acquire(self.stores.leases, session_id, self.owner)
        if held is None:
            return  # a live owner elsewhere reads the input from its cursor
        actor = self.actors[session_id] = SessionActor(self, session_id, held)
        task = asyncio.create_task(actor.live(), name=f"actor {session_id}")
        actor.task = task
        self.tasks.add(task)
        task.add_done_callback(self.released)

    def released(self, task: "asyncio.Task[None]") -> None:
        """An actor ended; when none is left, give the freed memory back to the system (the
        histories idle actors dropped would otherwise stay in the heap)."""
        self.tasks.discard(task)
        if not self.actors:
            gc.collect()
            memory.trim()

    async def tools(self, settings: ConversationSettings) -> ToolCatalog | None:
        """The tool catalog for the conversation's model and pool, asked again after
        CATALOG_TTL_S; None if no runner answers."""
        pool = settings.workspace.pool
        model = self.config.models.get(settings.model)
        remotes = list(self.config.remotes) if settings.remote.mode == "selectable" else []
        asking = ListTools(capabilities=list(model.capabilities) if model else [], remotes=remotes)
        key = (pool, *asking.capabilities, "|", *remotes)
        now = asyncio.get_running_loop().time()
        cached = self.catalogs.get(key)
        if cached and now - cached[0] < CATALOG_TTL_S:
            return cached[1]
        try:
            found = await catalog(self.conn, pool, asking)
        except TimeoutError:
            log.warning("no runner of pool %s answered the catalog request", pool)
            return None
        self.catalogs[key] = (now, found)
        return found

    async def on_control(self, msg: Msg) -> None:
        """The control lane of every session (one subscription per process, so a request is
        delivered to a connection once: NATS allows one response per delivery). The instance
        holding the session's actor acts on a nudge and answers a status query from memory; for
        a session nobody holds, every instance may answer from its head (the first one wins)."""
        found = await bus.decoded(self.conn, CONTROL, msg.data, msg.subject)
        if found is None:
            return
        actor = self.actors.get(found.session_id)
        match found:
            case NudgeSession():
                await self.nudge(found, msg)
            case StatusQuery() if msg.reply and actor is not None:
                with contextlib.suppress(nats.errors.Error):
                    await msg.respond(bus.encode(status.of_actor(actor)))
            case StatusQuery(session_id=session_id) if msg.reply:
                with contextlib.suppress(TimeoutError, nats.errors.Error, RuntimeError):
                    if await lease.holder(self.stores.leases, session_id) is not None:
                        return  # held elsewhere: its actor's process answers
                    held = await heads.read(self.conn, self.stores.heads, session_id)
                    await msg.respond(bus.encode(status.of_head(session_id, held)))
            case _:
                pass

    async def nudge(self, nudge: NudgeSession, msg: Msg) -> None:
        """Signal the actor, if it lives here, and say so: the sender wakes the session only
        when nobody holds it (a stopping actor does not count: the next owner needs the wake)."""
        actor = self.actors.get(nudge.session_id)
        if actor is not None:
            actor.signal(nudge.seq)
        if msg.reply:
            is_held = actor is not None and not actor.is_stopping
            answer = NudgeTaken(session_id=nudge.session_id, held=is_held)
            with contextlib.suppress(nats.errors.Error):
                await msg.respond(bus.encode(answer))

    async def watch_leases(self) -> None:
        """Wake every session whose lease expired: its owner died without letting go, with a
        turn running or input it took the wake of; a wake that finds nothing to do costs one
        idle actor. An expiry is a `MaxAge` marker after a live lease; the server places the
        same marker when a release (a delete) ages out, which is no death and wakes nothing."""
        watcher = await self.stores.leases.watchall(meta_only=True)
        held: set[str] = set()  # keys whose last entry is a live lease
        try:
            async for entry in watcher:
                if entry is None:
                    continue  # the end of the initial values
                if entry.operation not in (KV_DEL, KV_PURGE):
                    held.add(entry.key)
                    continue
                was_held = entry.key in held
                held.discard(entry.key)
                if was_held and entry.operation == KV_PURGE:
                    await self.wake_expired(entry)
        finally:
            with contextlib.suppress(nats.errors.Error):
                await watcher.stop()  # type: ignore[no-untyped-call]

    async def wake_expired(self, entry: KeyValue.Entry) -> None:
        prefix = subjects.session_lease_key("")
        if not entry.key.startswith(prefix):
            return  # a leader lease (`leader.<role>.<bot>`): its standby takes over by itself
        session_id = SessionId(entry.key.removeprefix(prefix))
        if session_id in self.actors:
            return
        log.warning("the lease of %s expired; waking it", session_id)
        rewake = subjects.rewake_msg_id(session_id, entry.revision or 0)
        with contextlib.suppress(TimeoutError, nats.errors.Error):
            await bus.wake(self.conn, session_id, rewake)

    async def finish(self, grace_s: float) -> None:
        """Let each actor end the step it is in for up to `grace_s`, then cancel it: it records
        where it is and releases its lease, and the next owner resumes from its journal."""
        for actor in self.actors.values():
            actor.stop()
        if self.tasks:
            _, pending = await asyncio.wait(self.tasks, timeout=grace_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)


async def catalog(conn: bus.Connection, pool: str, asking: ListTools) -> ToolCatalog:
    """The tool catalog from any runner of the pool (core request/reply). No runner listening
    yet (a stack starting, a runner restarting) is asked again for CATALOG_TIMEOUT_S in all."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + CATALOG_TIMEOUT_S
    pause_s = 0.05
    while True:
        try:
            reply = await conn.nc.request(
                subjects.tool_catalog(pool),
                bus.encode(asking),
                timeout=max(0.1, deadline - loop.time()),
            )
            break
        except NoRespondersError as exc:
            if loop.time() + pause_s >= deadline:
                raise TimeoutError(f"no runner of pool {pool!r} answered: {exc!r}") from exc
            await asyncio.sleep(pause_s)  # a runner that is starting subscribes soon
            pause_s = min(1.0, pause_s * 2)
        except TimeoutError as exc:
            raise TimeoutError(f"no runner of pool {pool!r} answered: {exc!r}") from exc
    found = await bus.decoded(conn, CATALOG_REPLY, reply.data, subjects.tool_catalog(pool))
    if found is None:
        raise TimeoutError(f"the runner of pool {pool!r} answered with a malformed catalog")
    return found
