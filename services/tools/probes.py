"""Answers to `sc.tool.probe.<pool>` (DESIGN §3): what this runner's host offers (bubblewrap),
for `/remote <name> [path]` whether the remote answers and the path is a directory there
(SPEC §6.6, within 10 s), and for `/status` what still runs in a workspace (`held`)."""

import asyncio
import shlex
from pathlib import Path

import msgspec
import nats.errors
from nats.micro.request import Request

from services.tools import held
from services.tools.context import RunnerContext
from services.tools.results import ToolError
from services.tools.sandbox.host import SandboxHost
from shared import bus, subjects
from shared.ids import SessionId
from shared.messages.tools import PROBE_REQUEST, PingRunner, PoolProbed

REMOTE_CHECK_S = 10.0
PING_TIMEOUT_S = 0.5


class Probes:
    """One runner's probe answers."""

    def __init__(
        self, conn: bus.Connection, host: SandboxHost, context: RunnerContext, workdir: Path
    ) -> None:
        self.answered = PoolProbed(runner_id=host.runner_id, sandbox=host.support)
        self.conn = conn
        self.host = host
        self.context = context
        self.workdir = workdir

    async def answer(self, request: Request) -> None:
        try:
            asked = PROBE_REQUEST.decode(request.data)
        except msgspec.DecodeError as exc:
            await request.respond_error("400", f"expected a ProbePool: {exc}")
            return
        reply = self.answered
        if asked.remote:
            error = await self.remote_error(asked.remote, asked.path)
            reply = msgspec.structs.replace(reply, remote_error=error)
        if asked.workspace is not None:
            found = await held.work_in(
                self.context, self.host, self.workdir, asked.workspace, self.is_alive
            )
            reply = msgspec.structs.replace(reply, held=found)
        await request.respond(bus.encode(reply))

    async def is_alive(self, runner_id: str) -> bool:
        """Does runner `runner_id` still run? Only "no responders" says no."""
        ping = PingRunner(session_id=SessionId("status"), call_ids=[])
        subject = subjects.tool_runner(runner_id)
        try:
            await self.conn.nc.request(subject, bus.encode(ping), timeout=PING_TIMEOUT_S)
        except nats.errors.NoRespondersError:
            return False
        except (TimeoutError, nats.errors.Error):
            return True
        return True

    async def remote_error(self, name: str, path: str) -> str:
        """Why remote `name` cannot be used with `path` as its workspace root; "" when it can."""
        if name not in self.context.settings.remotes:
            return f"this tool runner does not serve remote {name}"
        try:
            async with (
                asyncio.timeout(REMOTE_CHECK_S),
                self.context.remotes().channel(name) as conn,
            ):
                from services.tools.remote.connections import run_brief

                status = await run_brief(conn, name, f"test -d {shlex.quote(path)}")
        except ToolError as exc:
            return str(exc).removeprefix(f"cannot reach remote {name}: ")
        except TimeoutError:
            return f"no answer within {REMOTE_CHECK_S:g} s"
        return "" if status == 0 else f"{path} is not a directory there"
