"""Tools service, runner pool `local`: runs the model's tool calls in workspaces on this host.

Consumes: RunTool (SC_TOOL, durable `tools_local`, WORKERS calls at once), catalog requests
          (core `sc.tool.catalog.local`, queue group `local`), cancel requests (core
          `sc.ctl.tool.cancel.<session>.<call>`, every runner; the holder answers).
Produces: ToolFinished (SC_TOOLRES, `sc.tool.res.<session>.<call>`), ToolCatalog replies.
Owns:     the workspaces under `<workdir>/workspaces` with their shell logs and spilled outputs,
          and the commands running in them.
"""

import asyncio
import functools

import msgspec
from nats.micro.request import Request

from services.tools import cancellation, runner
from services.tools.catalog import specs
from shared import bus, layout, subjects
from shared.ids import new_id
from shared.lifecycle import Runtime
from shared.messages.tools import CATALOG_REQUEST, TOOL_REQUEST, ToolCatalog

POOL = layout.LOCAL_POOL
VERSION = "0.1.0"
WORKERS = 8  # tool calls this process runs at once


async def run(runtime: Runtime, stop: asyncio.Event) -> None:
    [requests] = layout.durables(runtime.config.bus)["tools"]
    async with bus.connected(runtime.bus, "tools") as conn, asyncio.TaskGroup() as tasks:
        discovery = await bus.register(conn, f"tool runner, pool {POOL}", VERSION)
        await discovery.add_endpoint(
            name="catalog",
            subject=subjects.tool_catalog(POOL),
            queue_group=POOL,
            handler=functools.partial(answer_catalog, bus.encode(ToolCatalog(tools=specs()))),
        )
        host = runner.Host(conn=conn, runner_id=new_id("r"), workdir=runtime.workdir)
        cancels = await cancellation.listen(conn, host.running, host.runner_id)
        handle = functools.partial(runner.handle, host)
        workers = [
            tasks.create_task(bus.consume(conn, requests, TOOL_REQUEST, handle, stop))
            for _ in range(WORKERS)
        ]
        await stop.wait()
        _, running = await asyncio.wait(workers, timeout=runtime.config.shutdown_grace_s)
        for worker in running:  # its call is cancelled and, un-acked, goes to the next runner
            worker.cancel()
        await cancels.unsubscribe()
        await discovery.stop()


async def answer_catalog(catalog: bytes, request: Request) -> None:
    try:
        CATALOG_REQUEST.decode(request.data)
    except msgspec.DecodeError as exc:
        await request.respond_error("400", f"expected a list_tools request: {exc}")
        return
    await request.respond(catalog)
