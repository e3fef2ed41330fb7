"""How a tool reaches the call's SSH remote: its files over SFTP and `grep`, `glob` and `ls`
through the remote walk script, on a channel of the runner's connection pool (SPEC §6.6)."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import msgspec

from services.tools.remote.files import RemoteFiles
from services.tools.remote.walk_script import WalkOp, run_walk
from services.tools.workspace import RemoteTarget, ToolCall


@asynccontextmanager
async def files(call: ToolCall, target: RemoteTarget) -> AsyncIterator[RemoteFiles]:
    """The remote workspace's files, on one SFTP session for the call."""
    remotes = call.runner.remotes()
    async with remotes.channel(target.name) as conn, conn.start_sftp_client() as sftp:
        yield RemoteFiles(sftp, target.root, remote=target.name)


async def walk(
    call: ToolCall, target: RemoteTarget, op: WalkOp, args: msgspec.Struct
) -> dict[str, object]:
    """`grep`, `glob` or `ls` run by the remote script, as the local tool would answer."""
    async with call.runner.remotes().channel(target.name) as conn:
        return await run_walk(conn, target.root, op, msgspec.to_builtins(args), target.name)
