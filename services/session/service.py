"""Session service: one SessionActor per live session; each runs its session's turns in order.

Consumes: session inputs (SC_SESS, one shared durable), tool results (`sc.tool.res.<session>.*`,
          with SC_TOOLRES read directly for anything missed), tool catalogs (request/reply).
Produces: RunTool (SC_TOOL), history events (SC_HIST), typing and answers (SC_OUT).
Owns:     the actors' tasks and their in-memory histories (rebuilt from SC_HIST on wake).
"""

import asyncio

import httpx

from services.session.actors import ActorPool
from shared import bus, layout
from shared.lifecycle import Runtime
from shared.messages.session import SESSION_INPUT

VERSION = "0.1.0"
HTTP_TIMEOUT = httpx.Timeout(connect=10.0, read=120.0, write=30.0, pool=10.0)


async def run(runtime: Runtime, stop: asyncio.Event) -> None:
    async with (
        bus.connected(runtime.bus, "session") as conn,
        httpx.AsyncClient(timeout=HTTP_TIMEOUT) as http,
    ):
        await bus.register(conn, "session actors: turns, model calls, tool batches", VERSION)
        actors = ActorPool(conn, runtime.config, http)
        [inputs] = layout.durables(runtime.config.bus)["session"]
        await bus.consume(conn, inputs, SESSION_INPUT, actors.take, stop)
        await actors.finish(grace_s=runtime.config.shutdown_grace_s)
