"""Answers to `sc.tool.probe.<pool>` (DESIGN §3): what this runner's host offers (bubblewrap),
and for `/remote <name> [path]` whether the remote answers and the path is a directory there
(SPEC §6.6, within 10 s)."""

import asyncio
import shlex

import msgspec
from nats.micro.request import Request

from services.tools.context import RunnerContext
from services.tools.results import ToolError
from shared import bus
from shared.messages.tools import PROBE_REQUEST, PoolProbed
from shared.sandbox import SandboxSupport

REMOTE_CHECK_S = 10.0


class Probes:
    """One runner's probe answers."""

    def __init__(self, runner_id: str, support: SandboxSupport, context: RunnerContext) -> None:
        self.answered = PoolProbed(runner_id=runner_id, sandbox=support)
        self.context = context

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
        await request.respond(bus.encode(reply))

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
