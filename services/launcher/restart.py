"""`stellaclaw restart <service>…`: restart services of a running `stellaclaw up`, one at a time.

For each service: record the request in `run/<service>.restart` (the pid it asks to restart),
SIGTERM the process in `run/<service>.pid`, and wait until the launcher started the next one and
it answers `$SRV.PING` under a new instance id. The service drains as on any stop (its un-acked
work goes back to its durables, leases are released, a leader hands over), and the launcher starts
it again at once instead of after a crash backoff. The other services are not touched. With
`all`, every running service is restarted in turn: a rolling restart.
"""

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path
from typing import TextIO

from services.launcher.discovery import Discovery
from services.launcher.supervisor import KILL_MARGIN_S, SERVICES, pid_path, request_path
from shared import config as config_file
from shared import lifecycle
from shared.bus import BusAccess
from shared.errors import ConfigError

HELP = "restart services of a running `stellaclaw up` one at a time (`all`: every service)"
START_S = 60.0  # how long a started service may take to answer


def configure(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    parser.add_argument("services", nargs="+", metavar="SERVICE", help="a service name, or all")
    parser.add_argument("--config", type=Path, default=Path("stellaclaw.toml"))
    parser.add_argument("--workdir", type=Path, default=None)
    return {}


def run(args: argparse.Namespace) -> int:

    try:
        config = config_file.load(args.config)
        workdir = lifecycle.workdir_of(config, args.workdir)
        names = _chosen(args.services, workdir)
        access = lifecycle.bus_access(config.bus, workdir, "observer", [])
    except ConfigError as exc:
        _say(str(exc), sys.stderr)
        return lifecycle.EXIT_CONFIG
    limit_s = config.shutdown_grace_s + KILL_MARGIN_S + START_S
    return asyncio.run(_restart_all(names, workdir, access, limit_s))


def _chosen(asked: list[str], workdir: Path) -> list[str]:
    running = [name for name in SERVICES if pid_path(workdir, name).exists()]
    if asked == ["all"]:
        if not running:
            raise ConfigError(f"restart: no `stellaclaw up` runs services in {workdir}")
        return running
    for name in asked:
        if name not in SERVICES:
            raise ConfigError(f"restart: {name!r} is not a service ({', '.join(SERVICES)}, all)")
        if name not in running:
            raise ConfigError(f"restart: no `stellaclaw up` runs {name} in {workdir}")
    return list(dict.fromkeys(asked))


async def _restart_all(names: list[str], workdir: Path, access: BusAccess, limit_s: float) -> int:
    async with Discovery.connected(access, "observer") as discovery:
        for name in names:
            loop = asyncio.get_running_loop()
            started = loop.time()
            try:
                async with asyncio.timeout(limit_s):
                    old, new, instance = await _restart_one(name, workdir, discovery)
            except TimeoutError:
                _say(f"restart: {name} did not come back within {limit_s:.0f} s", sys.stderr)
                return 1
            except ProcessLookupError:
                _say(f"restart: {name} is not running; its pid file is stale", sys.stderr)
                return 1
            took_s = loop.time() - started
            _say(f"restarted {name}: pid {old} → {new}, answering as {instance} ({took_s:.1f} s)")
    return 0


async def _restart_one(name: str, workdir: Path, discovery: Discovery) -> tuple[int, int, str]:
    """Ask, stop, and wait for the next process to answer; (old pid, new pid, instance id)."""
    old = _pid(workdir, name)
    before = set(await discovery.instances(name))
    request_path(workdir, name).write_text(f"{old}\n", encoding="utf-8")
    os.kill(old, signal.SIGTERM)
    new = old
    while new in (old, 0):
        await asyncio.sleep(0.1)  # the launcher writes the next pid file when it starts it
        new = _pid(workdir, name, missing_ok=True)
    while True:
        fresh = set(await discovery.instances(name)) - before
        if fresh:
            return old, new, sorted(fresh)[0]


def _pid(workdir: Path, name: str, *, missing_ok: bool = False) -> int:
    with contextlib.suppress(OSError, ValueError):
        return int(pid_path(workdir, name).read_text(encoding="utf-8"))
    if missing_ok:
        return 0
    raise ProcessLookupError(name)


def _say(line: str, to: TextIO = sys.stdout) -> None:
    print(line, file=to, flush=True)
