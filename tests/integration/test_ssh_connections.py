"""The SSH runner's connection pool (SPEC §6.6) against a real in-process SSH server: pinned host
keys, reuse, a second connection past 8 channels, idle close, and reconnecting after a dead one.

A relay between the pool and the server counts the TCP connections the pool makes, and can
freeze them (bytes stop flowing, sockets stay open: what a keepalive exists to notice) or cut them.
"""

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest

from services.tools.remote import commands, connections
from services.tools.remote.connections import Remotes
from services.tools.results import ToolError
from services.tools.sandbox.launch import Exit
from shared.tools_config import RemoteConfig
from tests.kit.ssh import SshServer
from tests.kit.waiting import eventually


class Relay:
    """One relayed TCP connection: client side and server side."""

    def __init__(self, client: asyncio.StreamWriter, server: asyncio.StreamWriter) -> None:
        self.client = client
        self.server = server
        self.is_frozen = False
        self.client_closed = False

    def cut(self) -> None:
        self.client.transport.abort()
        self.server.transport.abort()


class Proxy:
    """A TCP relay on 127.0.0.1 in front of `target_port`."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.relays: list[Relay] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for relay in self.relays:
            relay.cut()
        await self._server.wait_closed()

    def freeze(self) -> None:
        """Stop relaying on every connection made so far; later ones relay as usual."""
        for relay in self.relays:
            relay.is_frozen = True

    def cut(self) -> None:
        for relay in self.relays:
            relay.cut()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        relay = Relay(writer, up_writer)
        self.relays.append(relay)
        with contextlib.suppress(OSError):
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._pipe(reader, up_writer, relay))
                tasks.create_task(self._pipe(up_reader, writer, relay))
        if reader.at_eof():
            relay.client_closed = True
        relay.cut()

    @staticmethod
    async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter, relay: Relay) -> None:
        while chunk := await source.read(65_536):
            if not relay.is_frozen:
                sink.write(chunk)
        sink.close()


@contextlib.asynccontextmanager
async def proxy_to(port: int) -> AsyncIterator[Proxy]:
    proxy = Proxy(port)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.stop()


@contextlib.asynccontextmanager
async def pool(server: SshServer, root: Path, **overrides: object) -> AsyncIterator[Remotes]:
    config = msgspec.convert(server.remote(root, **overrides), RemoteConfig)
    remotes = Remotes({"box": config})
    try:
        yield remotes
    finally:
        await remotes.close()


async def run(remotes: Remotes, command: str, root: Path) -> Exit:
    """Run `command` in `root`. These tests read exit codes: the output path is the subject of
    test_ssh_commands."""
    launch = commands.RemoteLaunch(command=command, cwd=str(root), timeout_s=30)
    return await commands.run(remotes, "box", launch, lambda _: None)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_the_pinned_key_names_the_port_unless_it_is_22(server, tmp_path):
    table = server.remote(tmp_path)
    on_22 = msgspec.convert({**table, "port": 22}, RemoteConfig)
    elsewhere = msgspec.convert({**table, "port": 2222}, RemoteConfig)
    assert connections.known_hosts(on_22) == f"127.0.0.1 {server.host_key_line}\n"
    assert connections.known_hosts(elsewhere) == f"[127.0.0.1]:2222 {server.host_key_line}\n"


async def test_connects_and_runs_a_command(server, tmp_path):
    async with pool(server, tmp_path) as remotes:
        done = await run(remotes, f'[ "$(pwd)" = {tmp_path} ] && exit 7', tmp_path)
    assert done == Exit(returncode=7, timed_out=False)


async def test_sequential_commands_share_one_connection(server, tmp_path):
    async with proxy_to(server.port) as proxy, pool(server, tmp_path, port=proxy.port) as remotes:
        for n in range(3):
            done = await run(remotes, f"exit {n + 3}", tmp_path)
            assert done.returncode == n + 3
        async with remotes.channel("box") as first, remotes.channel("box") as second:
            assert first is second
    assert len(proxy.relays) == 1


async def test_a_ninth_concurrent_channel_opens_a_second_connection(server, tmp_path):
    release = tmp_path / "release"
    waiting = f"while [ ! -e {release} ]; do sleep 0.05; done; exit 5"
    async with proxy_to(server.port) as proxy, pool(server, tmp_path, port=proxy.port) as remotes:
        calls = [asyncio.create_task(run(remotes, waiting, tmp_path)) for _ in range(9)]
        await eventually(lambda: len(server.commands) == 9, what="9 commands running")
        assert len(proxy.relays) == 2  # 8 channels on the first connection, 1 on the second
        release.touch()
        results = await asyncio.gather(*calls)
    assert [done.returncode for done in results] == [5] * 9


async def test_a_wrong_pinned_host_key_is_refused(server, tmp_path):
    wrong = server.client_key.export_public_key().decode().strip()  # a valid key, not the host's
    async with pool(server, tmp_path, host_key=wrong) as remotes:
        with pytest.raises(ToolError, match="does not match the pinned host_key") as refused:
            await run(remotes, "exit 0", tmp_path)
    assert refused.value.kind == "remote_unreachable"
    assert str(refused.value).startswith("cannot reach remote box: the host key of 127.0.0.1:")
    assert server.commands == []


async def test_a_closed_port_is_unreachable(server, tmp_path):
    async with pool(server, tmp_path, port=free_port()) as remotes:
        with pytest.raises(ToolError, match="cannot reach remote box: connection refused") as err:
            await run(remotes, "exit 0", tmp_path)
    assert err.value.kind == "remote_unreachable"


async def test_a_silent_port_times_out(server, tmp_path, monkeypatch):
    monkeypatch.setattr(connections, "CONNECT_TIMEOUT_S", 0.3)
    accepted: list[asyncio.StreamWriter] = []
    silent = await asyncio.start_server(lambda _, writer: accepted.append(writer), "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    try:
        async with pool(server, tmp_path, port=port) as remotes:
            with pytest.raises(ToolError, match=f"no answer from 127.0.0.1:{port} within") as err:
                await run(remotes, "exit 0", tmp_path)
    finally:
        silent.close()
        for writer in accepted:
            writer.transport.abort()
        await silent.wait_closed()
    assert err.value.kind == "remote_unreachable"


async def test_a_refused_client_key_is_unreachable(server, tmp_path):
    other = tmp_path / "other_key"
    other.write_bytes(server.host_key.export_private_key())  # a key the server does not accept
    other.chmod(0o600)
    async with pool(server, tmp_path, key_file=str(other)) as remotes:
        with pytest.raises(ToolError, match="refused the key in key_file for user") as err:
            await run(remotes, "exit 0", tmp_path)
    assert err.value.kind == "remote_unreachable"


async def test_an_unknown_remote_is_unavailable(server, tmp_path):
    async with pool(server, tmp_path) as remotes:
        with pytest.raises(ToolError, match="no remote named 'elsewhere' is configured") as err:
            await run_on(remotes, "elsewhere")
    assert err.value.kind == "unavailable"


async def run_on(remotes: Remotes, name: str) -> None:
    async with remotes.channel(name):
        pass


async def test_an_idle_connection_is_closed_and_replaced(server, tmp_path, monkeypatch):
    monkeypatch.setattr(connections, "IDLE_CLOSE_S", 0.2)
    async with pool(server, tmp_path) as remotes:
        async with remotes.channel("box") as first:
            pass
        await eventually(first.is_closed, what="the idle connection closed")
        async with remotes.channel("box") as second:
            assert second is not first
            assert not second.is_closed()
        done = await run(remotes, "exit 6", tmp_path)
    assert done.returncode == 6


async def test_a_busy_connection_is_not_closed_as_idle(server, tmp_path, monkeypatch):
    monkeypatch.setattr(connections, "IDLE_CLOSE_S", 0.05)
    async with pool(server, tmp_path) as remotes, remotes.channel("box") as conn:
        done = await run(remotes, "sleep 0.3; exit 4", tmp_path)
        assert done.returncode == 4
        assert not conn.is_closed()


async def test_a_connection_lost_to_keepalive_is_replaced(server, tmp_path, monkeypatch):
    monkeypatch.setattr(connections, "KEEPALIVE_S", 0.2)
    async with proxy_to(server.port) as proxy, pool(server, tmp_path, port=proxy.port) as remotes:
        async with remotes.channel("box") as first:
            pass
        proxy.freeze()  # the remote goes silent without closing anything
        await eventually(lambda: proxy.relays[0].client_closed, what="keepalive gave up")
        assert first.is_closed()
        done = await run(remotes, "exit 9", tmp_path)
    assert done.returncode == 9
    assert len(proxy.relays) == 2


async def test_close_closes_every_connection(server, tmp_path):
    async with pool(server, tmp_path) as remotes:
        async with remotes.channel("box") as conn:
            pass
        await remotes.close()
        assert conn.is_closed()
