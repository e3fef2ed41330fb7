"""Session service: one SessionActor per session whose lease this process holds (DESIGN §5).

Consumes: wakes (SC_WAKE, one durable shared by the replicas); each actor reads its session's
          inputs from SC_SESS past its cursor when nudged on `sc.ctl.sess.<session>`; tool starts
          and results (SC_TOOLRES, one ordered consumer per actor); attachments (sc_files);
          tool catalogs (request/reply);
          status queries (the live actor, or any instance for an idle session); lease expiries
          (a watch on sc_lease).
Produces: RunTool (SC_TOOL), tool cancels, history events (SC_HIST), typing, answers and
          control replies (SC_OUT, SC_OUT_CLI), wakes of sessions that were cut or got input
          while their actor let them go.
Owns:     session leases (KV sc_lease), session heads (KV sc_session: cursor, owner revision,
          turn journal, totals), the actors' tasks and their in-memory histories (rebuilt from
          SC_HIST on takeover, dropped when an actor goes idle), the cache of attachments read
          from sc_files for model calls (`<workdir>/session/media`).
"""

import asyncio
import logging
import os

import httpx
import msgspec
import nats.errors
from nats.js.errors import NoKeysError

from services.session import lease
from services.session.actors import ActorPool, Stores
from services.session.media_store import MediaStore
from shared import bus, layout, subjects
from shared.ids import SessionId
from shared.lifecycle import Runtime
from shared.messages.session import WAKE

VERSION = "0.1.0"
HTTP_TIMEOUT = httpx.Timeout(connect=10.0, read=120.0, write=30.0, pool=10.0)
# Many sessions call the same provider at once: keep their connections (httpx keeps 20 by
# default, and a new TLS connection per model call costs more than the call's bookkeeping).
HTTP_LIMITS = httpx.Limits(max_connections=256, max_keepalive_connections=64)
DAY_S = 86_400.0
MEDIA_DIR = "session/media"  # attachments fetched from sc_files, fitted images, Files API ids
_OWNER: msgspec.json.Decoder[lease.Owner] = msgspec.json.Decoder(lease.Owner)
log = logging.getLogger(__name__)


async def run(runtime: Runtime, stop: asyncio.Event) -> None:
    async with (
        bus.connected(runtime.bus, "session") as conn,
        httpx.AsyncClient(timeout=HTTP_TIMEOUT, limits=HTTP_LIMITS) as http,
    ):
        stores = Stores(
            leases=await bus.bucket(conn, subjects.LEASE_BUCKET),
            heads=await bus.bucket(conn, subjects.SESSION_BUCKET),
        )
        media = MediaStore(conn, runtime.workdir / MEDIA_DIR)
        actors = ActorPool(conn, runtime.config, http, stores, media)
        actors.owner = lease.Owner(owner_id=runtime.owner_id, pid=os.getpid())
        actors.workdir = runtime.workdir
        await wake_orphans(actors)
        control = await conn.nc.subscribe(subjects.SESSION_CONTROL_ALL, cb=actors.on_control)
        await bus.register(conn, "session actors: turns, model calls, tool batches", VERSION)
        watcher = asyncio.create_task(actors.watch_leases())
        pruning = asyncio.create_task(media.keep_pruned(runtime.config.bus.files_ttl_days * DAY_S))
        [wakes] = layout.durables(runtime.config.bus)["session"]
        try:
            await bus.consume(conn, wakes, WAKE, actors.wake, stop)
        finally:
            watcher.cancel()
            pruning.cancel()
            await control.unsubscribe()
        await actors.finish(grace_s=runtime.config.shutdown_grace_s)


async def wake_orphans(actors: ActorPool) -> None:
    """Take the sessions this slot held before a restart (their leases are this slot's at once),
    and wake those whose lease just expired: their turns may have been cut, and no other wake may
    come for them."""
    prefix = subjects.session_lease_key("")
    try:
        keys = await actors.stores.leases.keys()
    except NoKeysError:
        return
    for key in keys:
        if not key.startswith(prefix):
            continue  # a leader lease (`leader.<role>.<bot>`)
        session_id = SessionId(key.removeprefix(prefix))
        entry = await actors.stores.leases.get(key)
        if not entry.value:
            log.info("waking session %s: its lease expired", session_id)
            rewake = subjects.rewake_msg_id(session_id, entry.revision or 0)
            await bus.wake(actors.conn, session_id, rewake)
            continue
        holder = _OWNER.decode(entry.value)
        if holder.owner_id == actors.owner.owner_id and not lease.is_running(holder.pid):
            log.info("taking session %s over: this slot held it before a restart", session_id)
            try:
                await actors.take(session_id)
            except nats.errors.Error:  # the bus is failing over: any instance takes the wake
                rewake = subjects.rewake_msg_id(session_id, entry.revision or 0)
                await bus.wake(actors.conn, session_id, rewake)
