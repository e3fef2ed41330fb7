"""Tools service: runs the model's tool calls for the runner pools it serves (`local`, and one
`ssh_<name>` per configured remote, unless `--pool` names some), in workspaces on this host.

Consumes: RunTool (SC_TOOL, durable `tools_<pool>` per pool, WORKERS calls at once each),
          catalog, probe and place requests (core `sc.tool.catalog.<pool>`,
          `sc.tool.probe.<pool>`, `sc.tool.place.<pool>`, queue group `<pool>`), attachments
          to place (sc_files), cancel requests (core `sc.ctl.tool.cancel.<session>.<call>`,
          every runner; the holder answers), forwarded calls and pings
          (`sc.tool.direct.<runner_id>`), `/new` and removal ends (`sc.ctl.tool.end.<conv>`).
Produces: ToolFinished (SC_TOOLRES, `sc.tool.res.<session>.<call>`), ToolCatalog, PoolProbed
          and FilesPlaced replies.
Owns:     the workspaces under `<workdir>/workspaces` with their uploads, shell logs and
          spilled outputs, the commands running in them, and removed conversations' workspaces
          kept under `workspaces/.removed/`.
"""

import asyncio
import functools
import socket

import msgspec
from nats.micro.request import Request
from nats.micro.service import Service

from services.tools import cancellation, direct, runner
from services.tools import catalog as listing
from services.tools.context import RunnerContext, Settings
from services.tools.placing import Placer
from services.tools.probes import Probes
from services.tools.sandbox import cgroups, host
from services.tools.tool_table import TABLE
from shared import bus, layout, subjects
from shared.ids import new_id
from shared.lifecycle import Runtime
from shared.messages.tools import (
    CATALOG_REQUEST,
    TOOL_REQUEST,
    ToolCatalog,
)
from shared.sandbox import SandboxSupport

VERSION = "0.1.0"
WORKERS = 8  # tool calls this process runs at once


async def run(runtime: Runtime, stop: asyncio.Event) -> None:
    runner_id = new_id("r")
    sandbox = await host.start(runtime.config.sandbox, runner_id, runtime.bus.secrets)
    try:
        await serve(runtime, stop, sandbox)
    finally:
        cgroups.remove_base(sandbox.cgroups)


async def serve(runtime: Runtime, stop: asyncio.Event, sandbox: host.SandboxHost) -> None:
    pools = runtime.pools or layout.pools(runtime.config)
    runner_id = sandbox.runner_id
    async with bus.connected(runtime.bus, "tools") as conn, asyncio.TaskGroup() as tasks:
        about = {"pools": ",".join(pools), "host": socket.gethostname(), "runner_id": runner_id}
        description = f"tool runner, pools {', '.join(pools)}"
        discovery = await bus.register(conn, description, VERSION, about)
        config = runtime.config
        settings = Settings(
            tools=config.tools, search=config.search, images=config.images, remotes=config.remotes
        )
        context = RunnerContext(
            runner_id=runner_id,
            settings=settings,
            store_file=functools.partial(store_file, conn),
        )
        probes = Probes(conn, sandbox, context, runtime.workdir)
        placer = Placer(conn, runtime.workdir, sandbox, context)
        catalogs = Catalogs(settings, sandbox.support)
        await listen_per_pool(discovery, pools, catalogs, probes, placer)
        running = runner.Host(
            conn=conn,
            runner_id=runner_id,
            workdir=runtime.workdir,
            sandbox=sandbox,
            context=context,
            forward=direct.forwarder(conn),
        )
        cancels = await cancellation.listen(conn, running.running, runner_id)
        forwarded, _ = await direct.listen(running)
        ends = await cancellation.listen_for_ends(conn, context, runtime.workdir, pools)
        handle = functools.partial(runner.handle, running)
        queues = layout.durables(config.bus, pools)["tools"]
        workers = [
            tasks.create_task(bus.consume(conn, queue, TOOL_REQUEST, handle, stop))
            for queue in queues
            for _ in range(WORKERS)
        ]
        await stop.wait()
        _, busy = await asyncio.wait(workers, timeout=config.shutdown_grace_s)
        for worker in busy:  # its call is cancelled and, un-acked, goes to the next runner
            worker.cancel()
        await context.end_all()  # shell sessions and downloads end with their runner
        await forwarded.unsubscribe()
        await ends.unsubscribe()
        await cancels.unsubscribe()
        await discovery.stop()


async def listen_per_pool(
    discovery: Service, pools: tuple[str, ...], catalogs: "Catalogs", probes: Probes, placer: Placer
) -> None:
    """Each pool's catalog, probe and place requests, answered by one runner of the pool (queue
    group)."""
    for pool in pools:
        await discovery.add_endpoint(
            name=f"catalog_{pool}",
            subject=subjects.tool_catalog(pool),
            queue_group=pool,
            handler=catalogs.answer,
        )
        await discovery.add_endpoint(
            name=f"probe_{pool}",
            subject=subjects.tool_probe(pool),
            queue_group=pool,
            handler=probes.answer,
        )
        await discovery.add_endpoint(
            name=f"place_{pool}",
            subject=subjects.tool_place(pool),
            queue_group=pool,
            handler=placer.answer,
        )


class Catalogs:
    """The catalog per model capabilities and session type, encoded once each."""

    def __init__(self, settings: Settings, support: SandboxSupport) -> None:
        self.settings = settings
        self.support = support
        self.encoded: dict[tuple[str, ...], bytes] = {}

    async def answer(self, request: Request) -> None:
        try:
            asking = CATALOG_REQUEST.decode(request.data)
        except msgspec.DecodeError as exc:
            await request.respond_error("400", f"expected a ListTools: {exc}")
            return
        key = (asking.session_type, *sorted(asking.capabilities), "|", *asking.remotes)
        reply = self.encoded.get(key)
        if reply is None:
            tools = listing.specs(TABLE, asking, self.settings)
            reply = self.encoded[key] = bus.encode(ToolCatalog(tools=tools, sandbox=self.support))
        await request.respond(reply)


async def store_file(conn: bus.Connection, name: str, data: bytes) -> None:
    """Put a tool's file into sc_files (media for the model, files for the user)."""
    store = await conn.js.object_store(subjects.FILES_STORE)
    await store.put(name, data)
