"""`stellaclaw up`: the embedded bus, the layout, and the five services as supervised children.

Start: lock the workdir, start and supervise `nats-server` (logins in `run/nats.conf`), migrate the
workdir, create or update streams, buckets and durables, then start the services. Stop (SIGTERM or
Ctrl-C): ingress stops polling, then conversation, session, tools and delivery drain one after
another, each given `shutdown_grace_s`, and the bus stops last.
"""

import asyncio
import contextlib
import fcntl
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import nats

from services.launcher import bus_auth, children, metrics, migrations
from services.launcher.embedded_nats import EmbeddedNats, Setup
from shared import config as config_file
from shared import connection, layout, lifecycle, subjects, variables
from shared.bus import BusAccess
from shared.config import Config
from shared.errors import ConfigError

SERVICES = ("conversation", "session", "tools", "delivery", "ingress_telegram")
STOP_ORDER = ("ingress_telegram", "conversation", "session", "tools", "delivery")
MAX_BACKOFF_S = 30.0
STABLE_S = 60.0  # a child that ran this long restarts without backoff
KILL_MARGIN_S = 5.0  # past its own shutdown grace, a child is killed
log = logging.getLogger(__name__)


def services_for(config: Config) -> list[str]:
    """Without a [telegram] section there is no Telegram ingress."""
    return [name for name in SERVICES if name != "ingress_telegram" or config.telegram]


def prepare_workdir(workdir: Path) -> None:
    """The workdir's folders; a workdir newer than this code is refused before anything runs."""
    migrations.found_version(workdir)
    for part in ("logs", "run", "workspaces", "shared", "skills"):
        (workdir / part).mkdir(parents=True, exist_ok=True)


def request_path(workdir: Path, service: str) -> Path:
    """Where `stellaclaw restart` asks the launcher to restart `service` at once when it exits."""
    return workdir / "run" / f"{service}.restart"


def pid_path(workdir: Path, service: str) -> Path:
    return workdir / "run" / f"{service}.pid"


def take_request(workdir: Path, service: str, pid: int) -> bool:
    """True (and the request gone) when `stellaclaw restart` asked for the exit of `pid`."""
    path = request_path(workdir, service)
    try:
        asked = path.read_text(encoding="utf-8").strip()
    except OSError:
        return False
    path.unlink(missing_ok=True)
    return asked == str(pid)


class Plan:
    """What every child is started with: where, with which config, under which lock."""

    def __init__(self, config: Config, config_path: Path, workdir: Path, lock_fd: int) -> None:
        self.config = config
        self.config_path = config_path
        self.workdir = workdir
        self.lock_fd = lock_fd
        self.raw = config_file.read_raw(config_path)
        self.environment = config_file.environment()


class Child:
    """One service process, restarted with backoff until the launcher stops."""

    def __init__(self, name: str, plan: Plan) -> None:
        self.name = name
        self.plan = plan
        self.process: asyncio.subprocess.Process | None = None
        self.exit_code: int | None = None

    async def supervise(self, stop: asyncio.Event, bus_up: asyncio.Event) -> None:
        backoff_s = 0.5  # the first restart waits 1 s
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            await bus_up.wait()  # a child started while the bus restarts could not log in
            started = loop.time()
            code = await self._run_once()
            if stop.is_set():  # stopping: `terminate` ends it, in the launcher's order
                return
            if self._asked_to_restart():
                log.info(
                    "%s stopped with %s on request (stellaclaw restart); starting it",
                    self.name,
                    code,
                )
                backoff_s = 0.5
                continue
            if code == lifecycle.EXIT_CONFIG:
                self.exit_code = code
                log.error("%s refused its config (exit 2); see logs/%s.log", self.name, self.name)
                stop.set()
                return
            stable = loop.time() - started > STABLE_S
            backoff_s = 1.0 if stable else min(backoff_s * 2, MAX_BACKOFF_S)
            log.warning("%s exited with %s; restarting in %.0f s", self.name, code, backoff_s)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(backoff_s):
                    await stop.wait()

    def _asked_to_restart(self) -> bool:
        pid = self.process.pid if self.process else 0
        return take_request(self.plan.workdir, self.name, pid)

    async def _run_once(self) -> int:
        plan = self.plan
        argv = [sys.executable, "-m", f"services.{self.name}", "--config", str(plan.config_path)]
        argv += ["--workdir", str(plan.workdir)]
        env = variables.child_environment(plan.raw, self.name, plan.environment)
        with (plan.workdir / "logs" / f"{self.name}.log").open("ab") as out:
            self.process = await children.spawn(argv, env=env, lock_fd=plan.lock_fd, output=out)
        pid_path(plan.workdir, self.name).write_text(f"{self.process.pid}\n", encoding="utf-8")
        log.info("started %s (pid %d)", self.name, self.process.pid)
        return await self.process.wait()

    async def terminate(self, grace_s: float) -> None:
        if self.process is not None and not await children.terminate(self.process, grace_s):
            log.warning("%s did not stop within %.0f s; killed it", self.name, grace_s)
        pid_path(self.plan.workdir, self.name).unlink(missing_ok=True)


@contextlib.contextmanager
def exclusive(workdir: Path) -> Iterator[int]:
    """Hold `run/up.lock` while running; every child inherits it, so while any of them lives
    (even after a SIGKILLed launcher) no second `up` can open the same store."""
    with (workdir / "run" / "up.lock").open("a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(
                f"workdir: a stellaclaw up (or a service or nats-server it started) still runs "
                f"in {workdir}; stop it first (pids in {workdir / 'run'})"
            ) from None
        yield lock.fileno()


async def up(config: Config, config_path: Path, workdir: Path, stop: asyncio.Event) -> int:
    """Run everything until `stop`; returns the exit code."""
    prepare_workdir(workdir)
    with exclusive(workdir) as lock_fd:
        return await _up(Plan(config, config_path, workdir, lock_fd), stop)


async def migrate(config: Config, config_path: Path, workdir: Path) -> None:
    """`stellaclaw migrate`: the workdir migrations and the bus layout, then stop."""
    prepare_workdir(workdir)
    with exclusive(workdir) as lock_fd:
        embedded, admin = await _start_bus(Plan(config, config_path, workdir, lock_fd))
        try:
            await _lay_out(admin, workdir, config)
        finally:
            if embedded:
                await embedded.stop()


async def _up(plan: Plan, stop: asyncio.Event) -> int:
    config, workdir = plan.config, plan.workdir
    bus_up = asyncio.Event()
    url_file = lifecycle.bus_url_file(workdir)
    url_file.unlink(missing_ok=True)  # left by an `up` that was killed: its bus is gone
    embedded, admin = await _start_bus(plan)
    try:
        await _lay_out(admin, workdir, config)  # a ConfigError here stops the start
        url_file.write_text(admin.url + "\n", encoding="utf-8")
        children_ = {name: Child(name, plan) for name in services_for(config)}
        _announce(admin.url, workdir, list(children_), embedded)
        async with asyncio.TaskGroup() as tasks:
            if embedded:
                tasks.create_task(embedded.supervise(bus_up))
            else:
                bus_up.set()
            for child in children_.values():
                tasks.create_task(child.supervise(stop, bus_up))
            if config.metrics.bind:  # a port in use is one warning, never the end of `up`
                tasks.create_task(metrics.serve_in_up(config, admin, services_for(config), stop))
            await stop.wait()
            await _stop_in_order(children_, config.shutdown_grace_s + KILL_MARGIN_S)
            if embedded:
                await embedded.stop()
        return next((c.exit_code for c in children_.values() if c.exit_code), 0)
    finally:
        url_file.unlink(missing_ok=True)
        if embedded:
            await embedded.stop()


async def _start_bus(plan: Plan) -> tuple[EmbeddedNats | None, BusAccess]:
    """The configured bus (logging in as admin), or an embedded server with fresh logins."""
    bus = plan.config.bus
    if bus.url:
        return None, BusAccess(url=bus.url, logins={"admin": lifecycle.credential(bus, "admin")})
    passwords = bus_auth.generate()
    conf = bus_auth.write(plan.workdir, bus, passwords)
    host, port = bus.listen.rsplit(":", 1)
    setup = Setup(
        store_dir=plan.workdir / "nats",
        host=host,
        port=int(port) or -1,
        conf_path=conf,
        log_path=plan.workdir / "logs" / "nats.log",
        lock_fd=plan.lock_fd,
    )
    embedded = EmbeddedNats(setup)
    url = await embedded.start()
    return embedded, bus_auth.access(url, passwords)


async def _lay_out(admin: BusAccess, workdir: Path, config: config_file.Config) -> None:
    """Migrate the workdir, then create or update streams, buckets and durables (as admin)."""
    login = admin.logins["admin"]
    bus, pools = config.bus, layout.pools(config)

    async def quiet(exc: Exception) -> None:  # the one error line is ours, below
        pass

    try:
        nc = await nats.connect(
            connection.servers(admin.url),
            **connection.login_options(login, "admin"),
            inbox_prefix=subjects.inbox_prefix("admin"),
            connect_timeout=5,
            allow_reconnect=False,
            max_reconnect_attempts=1,  # 0 would retry a refused connection forever
            error_cb=quiet,
        )
    except (nats.errors.Error, OSError, TimeoutError) as exc:
        raise ConfigError(f"bus: cannot log in to {admin.url} as the launcher: {exc}") from None
    try:
        await migrations.migrate(nc.jetstream(), workdir, bus)
        await layout.ensure(nc.jetstream(), bus, pools)
    finally:
        await nc.close()


async def _stop_in_order(children_: dict[str, Child], grace_s: float) -> None:
    for name in STOP_ORDER:
        if child := children_.get(name):
            await child.terminate(grace_s)


def _announce(url: str, workdir: Path, names: list[str], embedded: object) -> None:
    where = "embedded nats-server" if embedded else "configured NATS"
    lines = [
        f"Stellaclaw is starting (pid {os.getpid()})",
        f"  bus:       {url} ({where})",
        f"  workdir:   {workdir}",
        f"  logs:      {workdir / 'logs'}",
        f"  services:  {', '.join(names)}",
        f"  talk to it: stellaclaw chat --workdir {workdir}",
        "  stop:      Ctrl-C",
    ]
    print("\n".join(lines), flush=True)  # noqa: T201 -- the launcher's own console output
