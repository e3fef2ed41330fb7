"""The `stellaclaw` command line: up, run, chat, init, config check."""

import argparse
import asyncio
import importlib
import os
import signal
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path

import msgspec
import uvloop

from services.launcher import chat, migrations, starter, supervisor
from services.tools.sandbox import cgroups, host
from shared import config as config_file
from shared import lifecycle
from shared import logging as service_logging
from shared.config import SandboxConfig
from shared.errors import ConfigError

DEFAULT_CONFIG = Path("stellaclaw.toml")

# Operating commands (DESIGN §8), each a module of `services.launcher` with `HELP`,
# `configure(parser) -> {"<name> <sub>": subparser}` (its sub-commands, for the summary) and
# `run(args) -> int` (the exit code). Heavy imports stay inside `run`.
OPERATIONS: dict[str, str] = {
    "restart": "restart",
    "metrics": "metrics",
    "doctor": "doctor",
    "status": "status",
    "bus": "bus_view",
    "deploy": "deploy_users",
}


HELP = {
    "up": "start the bus (if no bus.url is set) and all five services, supervised",
    "run": "run one service against the configured bus (or the one `up` started)",
    "chat": "talk to Stellaclaw in the terminal, over the bus (conversation cli_<name>)",
    "migrate": "apply workdir migrations and create or update the bus layout, then exit",
    "init": "write a commented starter stellaclaw.toml (never over an existing file)",
    "config check": "validate a config file and print it with secrets as ***",
}


def parsers() -> dict[str, argparse.ArgumentParser]:
    """The top parser under "" and one parser per command."""
    top = argparse.ArgumentParser(prog="stellaclaw", description="Stellaclaw agent server")
    commands = top.add_subparsers(dest="command", required=True)
    found = {"": top}
    for name in ("up", "run", "chat", "migrate"):
        found[name] = commands.add_parser(name, help=HELP[name], description=HELP[name])
        if name == "run":
            found[name].add_argument("service", choices=supervisor.SERVICES)
            found[name].add_argument(
                "--owner-id",
                default=None,
                help="stable slot id for leases (default <host>/<workdir hash>/<service>/0)",
            )
            found[name].add_argument(
                "--pool",
                action="append",
                default=[],
                help="tools: a runner pool to serve (repeatable; default local and ssh_<name>)",
            )
        if name == "chat":
            found[name].add_argument("--name", default="terminal", help="conversation cli_<name>")
        found[name].add_argument("--config", type=Path, default=DEFAULT_CONFIG)
        found[name].add_argument("--workdir", type=Path, default=None)
    found["init"] = commands.add_parser("init", help=HELP["init"], description=HELP["init"])
    found["init"].add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    config = commands.add_parser("config", help="config tools")
    config_commands = config.add_subparsers(dest="config_command", required=True)
    check = config_commands.add_parser("check", help=HELP["config check"])
    check.add_argument("file", type=Path)
    found["config check"] = check
    for name, module_name in OPERATIONS.items():
        module = importlib.import_module(f"services.launcher.{module_name}")
        found[name] = commands.add_parser(name, help=module.HELP, description=module.HELP)
        found |= module.configure(found[name])
    return found


def summary() -> str:
    """Each command's usage and what it does: README's CLI section is exactly this text."""
    parts = []
    for name, command in parsers().items():
        if name and (command.description or name in HELP):
            usage = " ".join(command.format_usage().split()).removeprefix("usage: ")
            parts.append(f"{usage}\n    {HELP.get(name, command.description)}")
    return "\n".join(parts) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    args = parsers()[""].parse_args(argv)
    try:
        match args.command:
            case "up":
                sys.exit(_up(args.config, args.workdir))
            case "run":  # exactly `python -m services.<name>`, in this process's place
                rest = ["--config", str(args.config)]
                rest += ["--workdir", str(args.workdir)] if args.workdir else []
                rest += ["--owner-id", args.owner_id] if args.owner_id else []
                if args.pool and args.service != "tools":
                    raise ConfigError("--pool: only a tools process serves runner pools")
                rest += [part for pool in args.pool for part in ("--pool", pool)]
                os.execv(sys.executable, [sys.executable, "-m", f"services.{args.service}", *rest])
            case "chat":
                sys.exit(chat.main(args.config, args.workdir, args.name))
            case "migrate":
                _migrate(args.config, args.workdir)
            case "init":
                _init(args.config)
            case "config":
                _check(args.file)
            case name if name in OPERATIONS:
                module = importlib.import_module(f"services.launcher.{OPERATIONS[name]}")
                sys.exit(module.run(args))
    except ConfigError as exc:
        print(exc, file=sys.stderr)  # noqa: T201 -- the one line the operator reads
        sys.exit(lifecycle.EXIT_CONFIG)


def _up(config_path: Path, workdir: Path | None) -> int:
    config = config_file.load(config_path)
    where = lifecycle.workdir_of(config, workdir)
    absolute = config_path.resolve()
    service_logging.setup("launcher", config.logging.level, config_file.secret_values(config))

    async def serve() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        return await supervisor.up(config, absolute, where, stop)

    return uvloop.run(serve())


def _migrate(config_path: Path, workdir: Path | None) -> None:
    config = config_file.load(config_path)
    where = lifecycle.workdir_of(config, workdir)
    service_logging.setup("launcher", config.logging.level, config_file.secret_values(config))
    uvloop.run(supervisor.migrate(config, config_path.resolve(), where))
    print(f"{where} is at workdir version {migrations.WORKDIR_VERSION}; the bus layout is current")  # noqa: T201


def _init(path: Path) -> None:
    try:
        starter.write_starter(path)
    except FileExistsError:
        print(f"init: {path} already exists; not overwriting it", file=sys.stderr)  # noqa: T201
        sys.exit(1)
    print(f"Wrote {path}. Set OPENAI_API_KEY (or edit the model), then: stellaclaw up")  # noqa: T201


def _check(path: Path) -> None:
    config = config_file.load(path)
    raw = tomllib.loads(path.read_text(encoding="utf-8"))
    effective = msgspec.to_builtins(config)
    print(starter.redacted(effective, config_file.secret_paths(raw)), end="")  # noqa: T201
    for line in asyncio.run(_sandbox_findings(config.sandbox)):
        print(f"# {line}")  # noqa: T201 -- what the tools service would find on this host


async def _sandbox_findings(sandbox: SandboxConfig) -> list[str]:
    found = await host.probe(sandbox, "check", ())
    cgroups.remove_base(found.cgroups)
    return host.findings(found)
