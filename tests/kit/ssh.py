"""A real SSH server in the test process (asyncssh) for the SSH runner: exec requests run through
`bash -c` in a local subprocess, SFTP serves the local file system, and the host and client keys
are generated per server, so a test can pin the right host key or a wrong one.

The command's streams are copied by hand (not with `SSHServerProcess.redirect`, which could
exit the channel before the last output was forwarded), and a command killed by a signal is
reported as an exit signal, as sshd does."""

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import asyncssh

USER = "stellaclaw"


class SshServer:
    """One server on 127.0.0.1 at a free port, with a client key file for the runner."""

    def __init__(self, keys_dir: Path) -> None:
        self.host_key = asyncssh.generate_private_key("ssh-ed25519")
        self.client_key = asyncssh.generate_private_key("ssh-ed25519")
        self.key_file = keys_dir / "client_key"
        self.key_file.write_bytes(self.client_key.export_private_key())
        self.key_file.chmod(0o600)
        self.commands: list[str] = []  # every exec request, in order
        self.processes: set[asyncio.subprocess.Process] = set()
        self._server: asyncssh.SSHAcceptor | None = None
        self.port = 0

    @property
    def host_key_line(self) -> str:
        """The server's public key as `host_key` pins it."""
        return self.host_key.export_public_key().decode().strip()

    def remote(self, root: Path, **overrides: object) -> dict[str, object]:
        """A `[remotes.<name>]` table for this server, its workspace root `root`."""
        table: dict[str, object] = {
            "host": "127.0.0.1",
            "port": self.port,
            "user": USER,
            "key_file": str(self.key_file),
            "host_key": self.host_key_line,
            "root": str(root),
        }
        return table | overrides

    async def start(self) -> None:
        authorized = asyncssh.import_authorized_keys(self.client_key.export_public_key().decode())
        self._server = await asyncssh.listen(
            "127.0.0.1",
            0,
            server_host_keys=[self.host_key],
            authorized_client_keys=authorized,
            process_factory=self._run,
            sftp_factory=True,
            allow_scp=False,
            agent_forwarding=False,
            encoding=None,  # bytes, as the runner's channels are
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for process in list(self.processes):
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()

    async def _run(self, process: asyncssh.SSHServerProcess[bytes]) -> None:
        """An exec request: `bash -c <command>` here, its streams copied to the channel's."""
        command = process.command
        if command is None:  # no interactive shells on this server
            process.stderr.write(b"only commands are served here\n")
            process.exit(1)
            return
        self.commands.append(command)
        local = await asyncio.create_subprocess_exec(
            "bash",
            "-c",
            command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        self.processes.add(local)
        feeding = asyncio.create_task(_feed(process, local))
        try:
            assert local.stdout is not None
            assert local.stderr is not None
            await asyncio.gather(
                _copy(local.stdout, process.stdout), _copy(local.stderr, process.stderr)
            )
            code = await local.wait()
        finally:
            feeding.cancel()
            self.processes.discard(local)
        if code < 0:  # killed by a signal: reported as sshd does, with its name
            process.exit_with_signal(signal.Signals(-code).name.removeprefix("SIG"))
        else:
            process.exit(code)


async def _copy(source: asyncio.StreamReader, sink: asyncssh.SSHWriter[bytes]) -> None:
    with contextlib.suppress(OSError, asyncssh.Error):
        while data := await source.read(65_536):
            sink.write(data)


async def _feed(
    process: asyncssh.SSHServerProcess[bytes], local: asyncio.subprocess.Process
) -> None:
    """The channel's input to the command's stdin, closed at the channel's EOF."""
    assert local.stdin is not None
    with contextlib.suppress(OSError, asyncssh.Error):
        while data := await process.stdin.read(65_536):
            local.stdin.write(data)
            await local.stdin.drain()
    local.stdin.close()


@contextlib.asynccontextmanager
async def ssh_server(keys_dir: Path) -> AsyncIterator[SshServer]:
    server = SshServer(keys_dir)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
