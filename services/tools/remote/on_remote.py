"""How a tool reaches the call's SSH remote: its files over SFTP and `grep`, `glob` and `ls`
through the remote walk script, on a channel of the runner's connection pool (SPEC §6.6).

One SFTP session is kept per connection and shared by the calls on it (SFTP requests are
independent), so a file call costs a round trip, not a session's setup; it goes with its
connection."""

import asyncio
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncssh
import msgspec

from services.tools.remote.connections import dropped_reason, unreachable
from services.tools.remote.files import RemoteFiles
from services.tools.remote.walk_script import WalkOp, run_walk
from services.tools.workspace import RemoteTarget, ToolCall

_SESSIONS: "weakref.WeakKeyDictionary[asyncssh.SSHClientConnection, asyncssh.SFTPClient]" = (
    weakref.WeakKeyDictionary()
)
_OPENING: "weakref.WeakKeyDictionary[asyncssh.SSHClientConnection, asyncio.Lock]" = (
    weakref.WeakKeyDictionary()
)


async def sftp_of(conn: asyncssh.SSHClientConnection) -> asyncssh.SFTPClient:
    """The connection's SFTP session, started on first use."""
    lock = _OPENING.setdefault(conn, asyncio.Lock())
    async with lock:
        found = _SESSIONS.get(conn)
        if found is None:
            found = _SESSIONS[conn] = await conn.start_sftp_client()
        return found


@asynccontextmanager
async def files(call: ToolCall, target: RemoteTarget) -> AsyncIterator[RemoteFiles]:
    """The remote workspace's files, on the connection's SFTP session."""
    async with call.runner.remotes().channel(target.name) as conn:
        try:
            sftp = await sftp_of(conn)
        except (OSError, asyncssh.Error) as exc:
            raise unreachable(target.name, dropped_reason(exc)) from exc
        yield RemoteFiles(sftp, target.root, remote=target.name)


async def walk(
    call: ToolCall, target: RemoteTarget, op: WalkOp, args: msgspec.Struct
) -> dict[str, object]:
    """`grep`, `glob` or `ls` run by the remote script, as the local tool would answer."""
    async with call.runner.remotes().channel(target.name) as conn:
        return await run_walk(conn, target.root, op, msgspec.to_builtins(args), target.name)
