"""How every service process starts and stops: flags, config, logging, uvloop, signals, exit code.

`python -m services.<name>` and `stellaclaw run <name>` both end in `main(name, run)`. SIGTERM and
SIGINT set the stop Event that `run()` waits on; exit code 2 means the operator must fix the config.
"""

import argparse
import asyncio
import hashlib
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

import msgspec
import uvloop

from shared import config as config_file
from shared import layout
from shared import logging as service_logging
from shared.bus import BusAccess, Credential
from shared.errors import ConfigError

EXIT_CONFIG = 2
EXIT_STUCK = 3  # a stop that hung past its grace
STOP_MARGIN_S = 10.0  # past shutdown_grace_s, a stopping service exits anyway
log = logging.getLogger(__name__)


class Runtime(msgspec.Struct, frozen=True, kw_only=True):
    """What a service's `run()` gets: the decoded config, the workdir and the bus to use."""

    config: config_file.Config
    workdir: Path
    bus: BusAccess
    owner_id: str = "-"  # a stable slot id: the same after a restart (DESIGN §5)
    pools: tuple[str, ...] = ()  # the tool runner pools a `tools` process serves (`--pool`)


Run = Callable[[Runtime, asyncio.Event], Coroutine[Any, Any, None]]


def arguments(service: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"stellaclaw run {service}")
    parser.add_argument("--config", type=Path, default=Path("stellaclaw.toml"))
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument(
        "--owner-id",
        default=None,
        help="this process's stable slot id (default <host>/<workdir hash>/<service>/0)",
    )
    if service == "tools":
        parser.add_argument(
            "--pool",
            action="append",
            default=[],
            help="a runner pool to serve (repeatable; default local and ssh_<name> per remote)",
        )
    return parser


def default_owner_id(workdir: Path, service: str, slot: int = 0) -> str:
    """The slot id of the `slot`th process of `service` on this host and workdir."""
    digest = hashlib.sha256(str(workdir).encode()).hexdigest()[:8]
    return f"{socket.gethostname()}/{digest}/{service}/{slot}"


def workdir_of(config: config_file.Config, override: Path | None) -> Path:
    return (override or Path(config.workdir)).expanduser().resolve()


def bus_url_file(workdir: Path) -> Path:
    """Where `stellaclaw up` records the bus it started, for `stellaclaw run` and `chat`."""
    return workdir / "run" / "bus.url"


def auth_dir(workdir: Path) -> Path:
    """Where `stellaclaw up` keeps the embedded bus's password of each role (0700, files 0600)."""
    return workdir / "run" / "auth"


def bus_access(
    bus: config_file.BusConfig, workdir: Path, role: str, secrets: list[str]
) -> BusAccess:
    """The configured bus and its credentials, else the embedded bus that `up` started."""
    if bus.url:
        login = credential(bus, role)
        return BusAccess(url=bus.url, logins={role: login}, secrets=tuple(secrets))
    login = Credential(user=role, password=embedded_password(workdir, role))
    url = resolve_bus_url_file(workdir)
    return BusAccess(url=url, logins={role: login}, secrets=tuple(secrets))


def credential(bus: config_file.BusConfig, role: str) -> Credential:
    """The role's login on a configured (external) bus."""
    found = bus.credentials(role)
    return Credential(
        user=found.user, password=found.password, token=found.token, creds_file=found.creds_file
    )


def embedded_password(workdir: Path, role: str) -> str:
    path = auth_dir(workdir) / role
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError:
        raise ConfigError(
            f"config: bus.url: not set, and no running `stellaclaw up` recorded the {role} "
            f"credentials in {path}"
        ) from None


def resolve_bus_url_file(workdir: Path) -> str:
    """The URL a running `stellaclaw up` recorded in the workdir."""
    recorded = bus_url_file(workdir)
    try:
        return recorded.read_text(encoding="utf-8").strip()
    except OSError:
        raise ConfigError(
            f"config: bus.url: not set, and no running `stellaclaw up` recorded one in {recorded}"
        ) from None


def runtime(
    config_path: Path, workdir: Path | None, service: str, owner_id: str | None = None
) -> Runtime:
    """The config as `service` sees it (only its own secrets resolved) and its bus login."""
    config = config_file.load(config_path, service)
    where = workdir_of(config, workdir)
    access = bus_access(config.bus, where, service, config_file.secret_values(config))
    owner = owner_id or default_owner_id(where, service)
    return Runtime(config=config, workdir=where, bus=access, owner_id=owner)


def served_pools(config: config_file.Config, asked: Sequence[str]) -> tuple[str, ...]:
    """The pools a `tools` process serves: those asked for, each one the config names."""
    known = layout.pools(config)
    unknown = [pool for pool in asked if pool not in known]
    if unknown:
        raise ConfigError(
            f"--pool: pool {unknown[0]!r} is not configured (configured: {', '.join(known)}); "
            "a remote's pool is ssh_<name>"
        )
    return tuple(dict.fromkeys(asked)) or known


def main(service: str, run: Run, argv: Sequence[str] | None = None) -> None:
    """Run one service until SIGTERM/SIGINT; exit 2 on a config error."""
    args = arguments(service).parse_args(argv)
    try:
        ready = runtime(args.config, args.workdir, service, args.owner_id)
        if service == "tools":
            pools = served_pools(ready.config, args.pool)
            ready = msgspec.structs.replace(ready, pools=pools)
    except ConfigError as exc:
        print(exc, file=sys.stderr)  # noqa: T201 -- the one line the operator reads
        sys.exit(EXIT_CONFIG)
    service_logging.setup(service, ready.config.logging.level, ready.bus.secrets)
    refused: list[BaseException] = []
    try:
        uvloop.run(_serve(service, run, ready))
    except* ConfigError as group:  # raised by run() itself or by a task of its TaskGroup
        refused += group.exceptions
    if refused:
        log.error("%s", refused[0])
        sys.exit(EXIT_CONFIG)


async def _serve(service: str, run: Run, ready: Runtime) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    grace_s = ready.config.shutdown_grace_s

    def stopping() -> None:
        if not stop.is_set():  # a stop that hangs past its grace ends the process anyway
            log.info("stopping: draining for up to %.0f s", grace_s)
            loop.call_later(grace_s + STOP_MARGIN_S, _stuck, grace_s + STOP_MARGIN_S)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping)
    log.info("starting", extra={"bus": ready.bus.url, "workdir": str(ready.workdir)})
    await run(ready, stop)
    log.info("stopped")


def _stuck(after_s: float) -> None:
    """The stop did not finish: say what still waits, then exit (the supervisor restarts)."""
    waiting = [task.get_coro() for task in asyncio.all_tasks() if not task.done()]
    shown = ", ".join(getattr(coro, "__qualname__", repr(coro)) for coro in waiting[:12])
    log.error("did not stop within %.0f s; exiting; still waiting: %s", after_s, shown)
    logging.shutdown()
    os._exit(EXIT_STUCK)
