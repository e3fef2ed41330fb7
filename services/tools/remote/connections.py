"""SSH connections to the configured remotes (SPEC §6.6), pooled per remote in one runner process.

A command leases a channel slot on a connection: at most CHANNELS_PER_CONNECTION leases share one
connection, and one more opens another connection. A connection nobody leases is closed after
IDLE_CLOSE_S; one that died (KEEPALIVE_MISSES keepalives unanswered, or closed by the remote) is
dropped, and the next lease connects again. The host key is pinned from the remote's `host_key`;
no agent is used or forwarded, and no `~/.ssh/config` is read.

This is the one module that imports asyncssh, and only runners serving a remote pool import it:
`commands` reaches channels through `start` and `run_brief` below.
"""

import asyncio
import contextlib
import signal
import socket
from collections.abc import AsyncIterator, Mapping
from typing import Protocol

import asyncssh

from services.tools.results import ToolError
from shared.tools_config import RemoteConfig

CONNECT_TIMEOUT_S = 10.0  # TCP, handshake and authentication
KEEPALIVE_S = 15.0
KEEPALIVE_MISSES = 3  # unanswered keepalives in a row: the connection is dead
IDLE_CLOSE_S = 300.0
CHANNELS_PER_CONNECTION = 8
BRIEF_COMMAND_S = 10.0  # a helper command (signalling a process group) gives up after this
TTY_COLUMNS, TTY_ROWS = 100, 30
TTY_TERM = "xterm-256color"

Connection = asyncssh.SSHClientConnection
SshChannel = asyncssh.SSHClientChannel[bytes]


def unreachable(name: str, reason: str) -> ToolError:
    return ToolError("remote_unreachable", f"cannot reach remote {name}: {reason}")


class Link:
    """One SSH connection, how many channel slots are leased on it, and its idle timer."""

    def __init__(self, conn: asyncssh.SSHClientConnection) -> None:
        self.conn = conn
        self.leases = 0
        self.idle: asyncio.TimerHandle | None = None

    @property
    def is_alive(self) -> bool:
        return not self.conn.is_closed()

    @property
    def has_free_slot(self) -> bool:
        return self.is_alive and self.leases < CHANNELS_PER_CONNECTION

    def close(self) -> None:
        if self.idle is not None:
            self.idle.cancel()
            self.idle = None
        self.conn.close()


class Pool:
    """The connections of one remote. One connect at a time is in flight: concurrent leases
    that find no free slot wait for it (and share its failure) instead of each connecting."""

    def __init__(self, name: str, config: RemoteConfig) -> None:
        self.name = name
        self.config = config
        self.links: list[Link] = []
        self.connecting: asyncio.Task[Link] | None = None

    async def lease(self) -> Link:
        """A live connection with a slot taken for the caller; connects when none is free."""
        while True:
            self._drop_dead()
            link = next((link for link in self.links if link.has_free_slot), None)
            if link is not None:
                link.leases += 1
                if link.idle is not None:
                    link.idle.cancel()
                    link.idle = None
                return link
            if self.connecting is None:
                self.connecting = asyncio.create_task(self._connect())
                self.connecting.add_done_callback(self._connected)
            await asyncio.shield(self.connecting)  # one waiter cancelled: the connect goes on

    def release(self, link: Link) -> None:
        link.leases -= 1
        if link.leases == 0 and link.is_alive:
            self._close_when_idle(link)

    def close(self) -> list[Link]:
        """Close every connection; the links, to wait for."""
        if self.connecting is not None:
            self.connecting.cancel()
        links, self.links = self.links, []
        for link in links:
            link.close()
        return links

    async def _connect(self) -> Link:
        link = Link(await connect(self.name, self.config))
        self.links.append(link)
        self._close_when_idle(link)  # its waiters may all be gone: unleased, it still times out
        return link

    def _connected(self, task: asyncio.Task[Link]) -> None:
        self.connecting = None
        if not task.cancelled():
            task.exception()  # retrieved here: every waiter may have been cancelled

    def _drop_dead(self) -> None:
        for link in [link for link in self.links if not link.is_alive]:
            self.links.remove(link)
            link.close()

    def _close_when_idle(self, link: Link) -> None:
        loop = asyncio.get_running_loop()
        link.idle = loop.call_later(IDLE_CLOSE_S, self._close_idle, link)

    def _close_idle(self, link: Link) -> None:
        link.idle = None
        if link.leases == 0 and link in self.links:
            self.links.remove(link)
            link.close()


class Remotes:
    """The SSH connection pools of one runner process, one per configured remote."""

    def __init__(self, configs: Mapping[str, RemoteConfig]) -> None:
        self.pools = {name: Pool(name, config) for name, config in configs.items()}

    @contextlib.asynccontextmanager
    async def channel(self, name: str) -> AsyncIterator[asyncssh.SSHClientConnection]:
        """A connection to remote `name` with one channel slot held for the caller while inside.
        Raises ToolError: `unavailable` for an unknown name, `remote_unreachable` when no
        connection can be made."""
        pool = self.pools.get(name)
        if pool is None:
            configured = ", ".join(sorted(self.pools)) or "none"
            raise ToolError(
                "unavailable", f"no remote named {name!r} is configured; configured: {configured}"
            )
        link = await pool.lease()
        try:
            yield link.conn
        finally:
            pool.release(link)

    async def close(self) -> None:
        """Close every connection of every remote and wait until they are closed."""
        links = [link for pool in self.pools.values() for link in pool.close()]
        await asyncio.gather(*(link.conn.wait_closed() for link in links))


def known_hosts(config: RemoteConfig) -> str:
    """The pinned key as a known_hosts line: `[host]:port`, or plain `host` on port 22."""
    pattern = config.host if config.port == 22 else f"[{config.host}]:{config.port}"
    return f"{pattern} {config.host_key}\n"


async def connect(name: str, config: RemoteConfig) -> asyncssh.SSHClientConnection:
    """One authenticated connection to remote `name`, or ToolError `remote_unreachable`."""
    try:
        pinned = asyncssh.import_known_hosts(known_hosts(config))
    except (asyncssh.KeyImportError, ValueError) as exc:
        raise unreachable(name, "its pinned host_key is not a valid public key line") from exc
    try:
        return await asyncssh.connect(
            config.host,
            config.port,
            config=None,  # no ~/.ssh/config: the remote's table is the whole configuration
            username=config.user,
            client_keys=[config.key_file],
            known_hosts=pinned,
            agent_path=None,
            agent_forwarding=False,
            password_auth=False,
            kbdint_auth=False,
            gss_auth=False,
            connect_timeout=CONNECT_TIMEOUT_S,
            keepalive_interval=KEEPALIVE_S,
            keepalive_count_max=KEEPALIVE_MISSES,
        )
    except (OSError, asyncssh.Error) as exc:
        raise unreachable(name, failure_reason(exc, config)) from exc


def failure_reason(exc: Exception, config: RemoteConfig) -> str:
    """A short readable reason for a failed connect, without anything secret."""
    address = f"{config.host}:{config.port}"
    match exc:
        case asyncssh.HostKeyNotVerifiable():
            return f"the host key of {address} does not match the pinned host_key"
        case asyncssh.PermissionDenied():
            return f"{address} refused the key in key_file for user {config.user!r}"
        case asyncssh.KeyImportError():
            return f"cannot use the private key in key_file {config.key_file!r}: {exc}"
        case asyncssh.DisconnectError():
            return f"{address} closed the connection: {exc.reason}"
        case TimeoutError():
            return f"no answer from {address} within {CONNECT_TIMEOUT_S:g} s"
        case ConnectionRefusedError():
            return f"connection refused by {address}"
        case socket.gaierror():
            return f"unknown host {config.host!r}"
        case OSError(filename=str(path)):
            return f"{exc.strerror}: {path!r}"
        case _:
            return str(exc) or type(exc).__name__


def dropped_reason(exc: Exception) -> str:
    """Why an open connection or channel failed, in a few words."""
    if isinstance(exc, asyncssh.DisconnectError):
        return f"the connection dropped: {exc.reason}"
    if isinstance(exc, asyncssh.ChannelOpenError):
        return f"no channel could be opened: {exc.reason}"
    return f"the connection dropped: {exc}"


class Receiver(Protocol):
    """What a remote command's channel reports, as it happens."""

    def received(self, data: bytes) -> None:
        """Output (stdout and stderr, in arrival order)."""

    def exited(self, returncode: int) -> None:
        """The exit status; negative: killed by that signal."""

    def closed(self, reason: str | None) -> None:
        """The channel closed: `reason` says why when its connection dropped."""


class Session(asyncssh.SSHClientSession[bytes]):
    """Forwards one channel's events to a Receiver."""

    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        self.receiver.received(data)

    def exit_status_received(self, status: int) -> None:
        self.receiver.exited(status)

    def exit_signal_received(self, signal: str, core_dumped: bool, msg: str, lang: str) -> None:
        self.receiver.exited(-signal_number(signal))

    def connection_lost(self, exc: Exception | None) -> None:
        self.receiver.closed(None if exc is None else dropped_reason(exc))


def signal_number(name: str) -> int:
    """`TERM` → 15; an unknown name → 1 (SIGHUP's number: something hung up on it)."""
    found = signal.Signals.__members__.get(f"SIG{name}")
    return found.value if found is not None else 1


async def start(
    conn: asyncssh.SSHClientConnection, name: str, command: str, receiver: Receiver, *, tty: bool
) -> SshChannel:
    """Run `command` on a new channel of `conn`, its events going to `receiver`; with `tty` on
    a pseudo-terminal (TTY_COLUMNS x TTY_ROWS), else with stdin closed."""
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            channel, _ = await conn.create_session(
                lambda: Session(receiver),
                command,
                encoding=None,
                request_pty=tty,
                term_type=TTY_TERM if tty else None,
                term_size=(TTY_COLUMNS, TTY_ROWS) if tty else None,
            )
    except TimeoutError as exc:
        raise unreachable(name, "no channel opened within 10 s") from exc
    except (OSError, asyncssh.Error) as exc:
        raise unreachable(name, dropped_reason(exc)) from exc
    if not tty:
        channel.write_eof()
    return channel


async def run_brief(conn: asyncssh.SSHClientConnection, name: str, command: str) -> int:
    """Run a short helper command on its own channel; its exit status."""
    try:
        done = await conn.run(command, check=False, timeout=BRIEF_COMMAND_S)
    except asyncssh.TimeoutError as exc:
        raise unreachable(name, f"a helper command took over {BRIEF_COMMAND_S:g} s") from exc
    except (OSError, asyncssh.Error) as exc:
        raise unreachable(name, dropped_reason(exc)) from exc
    return done.returncode if done.returncode is not None else -1
