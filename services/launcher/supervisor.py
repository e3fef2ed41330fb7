"""`stellaclaw up`: the embedded bus, the layout, and the five services as supervised children."""

import asyncio
import contextlib
import fcntl
import logging
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import nats

from services.launcher.embedded_nats import EmbeddedNats
from shared import layout, lifecycle
from shared.config import Config
from shared.errors import ConfigError

SERVICES = ("conversation", "session", "tools", "delivery", "ingress_telegram")
MAX_BACKOFF_S = 30.0
STABLE_S = 60.0  # a child that ran this long restarts without backoff
WORKDIR_VERSION = 1
log = logging.getLogger(__name__)


def services_for(config: Config) -> list[str]:
    """Without a [telegram] section there is no Telegram ingress."""
    return [name for name in SERVICES if name != "ingress_telegram" or config.telegram]


def prepare_workdir(workdir: Path) -> None:
    for part in ("logs", "run", "workspaces", "shared", "skills"):
        (workdir / part).mkdir(parents=True, exist_ok=True)
    version_file = workdir / "VERSION"
    if version_file.exists():
        found = int(version_file.read_text(encoding="utf-8").strip() or "0")
        if found > WORKDIR_VERSION:
            raise ConfigError(
                f"workdir: workdir version {found} is newer than this Stellaclaw supports "
                f"({WORKDIR_VERSION})"
            )
    version_file.write_text(f"{WORKDIR_VERSION}\n", encoding="utf-8")


class Child:
    """One service process, restarted with backoff until the launcher stops."""

    def __init__(self, name: str, config_path: Path, workdir: Path) -> None:
        self.name = name
        self.config_path = config_path
        self.workdir = workdir
        self.process: asyncio.subprocess.Process | None = None
        self.exit_code: int | None = None

    async def supervise(self, stop: asyncio.Event) -> None:
        backoff_s = 0.5  # the first restart waits 1 s
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            started = loop.time()
            code = await self._run_once(stop)
            if stop.is_set():
                return
            if code == lifecycle.EXIT_CONFIG:
                self.exit_code = code
                log.error("%s refused its config (exit 2); see logs/%s.log", self.name, self.name)
                stop.set()
                return
            stable = loop.time() - started > STABLE_S
            backoff_s = 1.0 if stable else min(backoff_s * 2, MAX_BACKOFF_S)
            log.warning("%s exited with %s; restarting in %.0f s", self.name, code, backoff_s)
            try:
                async with asyncio.timeout(backoff_s):
                    await stop.wait()
            except TimeoutError:
                pass

    async def _run_once(self, stop: asyncio.Event) -> int:
        argv = ["-m", f"services.{self.name}", "--config", str(self.config_path)]
        argv += ["--workdir", str(self.workdir)]
        with (self.workdir / "logs" / f"{self.name}.log").open("ab") as out:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, *argv, stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out
            )
        pid_file = self.workdir / "run" / f"{self.name}.pid"
        pid_file.write_text(f"{self.process.pid}\n", encoding="utf-8")
        log.info("started %s (pid %d)", self.name, self.process.pid)
        return await self.process.wait()

    async def terminate(self, grace_s: float) -> None:
        process = self.process
        if process is None or process.returncode is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(grace_s):
                await process.wait()
        except TimeoutError:
            log.warning("%s did not stop within %.0f s; killing it", self.name, grace_s)
            process.kill()
            await process.wait()
        (self.workdir / "run" / f"{self.name}.pid").unlink(missing_ok=True)


@contextlib.contextmanager
def exclusive(workdir: Path) -> Iterator[None]:
    """Hold `run/up.lock` while running: two `up`s on one workdir would share one NATS store."""
    with (workdir / "run" / "up.lock").open("a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(
                f"workdir: another `stellaclaw up` is running in {workdir}; stop it first"
            ) from None
        yield


async def up(config: Config, config_path: Path, workdir: Path, stop: asyncio.Event) -> int:
    """Run everything until `stop`; returns the exit code."""
    prepare_workdir(workdir)
    with exclusive(workdir):
        return await _up(config, config_path, workdir, stop)


async def _up(config: Config, config_path: Path, workdir: Path, stop: asyncio.Event) -> int:
    embedded: EmbeddedNats | None = None
    url = config.bus.url
    if not url:
        embedded = EmbeddedNats(workdir / "nats", log_path=workdir / "logs" / "nats.log")
        url = await embedded.start()
    url_file = lifecycle.bus_url_file(workdir)
    try:
        await _ensure_layout(url, config.bus.in_partitions)
        url_file.write_text(url + "\n", encoding="utf-8")
        children = [Child(name, config_path, workdir) for name in services_for(config)]
        _announce(url, workdir, children, embedded)
        async with asyncio.TaskGroup() as tasks:
            for child in children:
                tasks.create_task(child.supervise(stop))
            await stop.wait()
            await asyncio.gather(*(c.terminate(config.shutdown_grace_s + 5) for c in children))
        return next((c.exit_code for c in children if c.exit_code), 0)
    finally:
        url_file.unlink(missing_ok=True)
        if embedded:
            await embedded.stop()


async def _ensure_layout(url: str, in_partitions: int) -> None:
    nc = await nats.connect(url, connect_timeout=5, max_reconnect_attempts=3)
    try:
        await layout.ensure(nc.jetstream(), in_partitions)
    finally:
        await nc.close()


def _announce(url: str, workdir: Path, children: list[Child], embedded: object) -> None:
    where = "embedded nats-server" if embedded else "configured NATS"
    lines = [
        f"Stellaclaw is starting (pid {os.getpid()})",
        f"  bus:       {url} ({where})",
        f"  workdir:   {workdir}",
        f"  logs:      {workdir / 'logs'}",
        f"  services:  {', '.join(c.name for c in children)}",
        f"  talk to it: stellaclaw chat --workdir {workdir}",
        "  stop:      Ctrl-C",
    ]
    print("\n".join(lines), flush=True)  # noqa: T201 -- the launcher's own console output
