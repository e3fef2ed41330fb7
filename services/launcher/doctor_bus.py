"""`stellaclaw doctor` on the bus: the login, JetStream, the layout, the services and the pools.

It logs in as the read-only `observer` role (DESIGN §11), which may ask `$SRV.PING`, read stream
and consumer state and ask each pool's probe, nothing else. Every service answers `$SRV.PING`
(nats.micro), so one ping collected for PING_WAIT_S finds them all; each tools pool is asked what
its host offers through `sc.tool.probe.<pool>`, answered there, not on the doctor's host.
"""

import asyncio
from pathlib import Path

import msgspec
import nats.errors
from nats.aio.client import Client

from services.launcher import discovery, doctor_layout, supervisor
from services.launcher.doctor_findings import Finding, failed, passed, warned
from shared import bus, layout, lifecycle, sandbox, subjects
from shared.config import Config, SandboxConfig
from shared.connection import BusAccess, Connection, connected
from shared.errors import ConfigError
from shared.messages.tools import PROBE_REPLY, PoolProbed, ProbePool
from shared.tools_config import RemoteConfig, remote_pool

ROLE = "observer"
CONNECT_S = 5.0  # how long an unreachable bus is retried
PING_WAIT_S = 1.0  # every live instance answers a ping well within this
PROBE_S = 5.0
REMOTE_PROBE_S = 12.0  # the runner gives a remote 10 s (services/tools/probes.py)
PING_ALL = "$SRV.PING"


class Pong(msgspec.Struct, frozen=True, kw_only=True):
    """A `$SRV.PING` answer (nats.micro): the service, the instance, and what it says of itself."""

    name: str
    instance_id: str = msgspec.field(name="id")
    version: str = ""
    metadata: dict[str, str] | None = None  # a tool runner's `host`, `pools` and `runner_id`


PONG: msgspec.json.Decoder[Pong] = msgspec.json.Decoder(Pong)


async def findings(config: Config, workdir: Path) -> list[Finding]:
    """The bus line, then (once logged in) the layout's, the services' and the pools' lines."""
    try:
        access = lifecycle.bus_access(config.bus, workdir, ROLE, [])
    except ConfigError as exc:
        fix = "start Stellaclaw (`stellaclaw up`), or pass the --workdir it runs in"
        return [failed("bus", str(exc).removeprefix("config: "), fix)]
    return await findings_on(config, access, workdir)


async def findings_on(config: Config, access: BusAccess, workdir: Path) -> list[Finding]:
    try:
        async with connected(access, ROLE, connect_s=CONNECT_S) as conn:
            return await _checks(conn, config, access, workdir)
    except ConfigError as exc:  # `connected` could not reach the bus or log in
        return [failed("bus", str(exc).removeprefix("bus: "), _login_fix(config))]


def _login_fix(config: Config) -> str:
    if config.bus.url:
        return f"check bus.url and the {ROLE} login ([bus.services.{ROLE}], else bus.user/password)"
    return "start `stellaclaw up` again: the bus it recorded is gone"


async def _checks(
    conn: Connection, config: Config, access: BusAccess, workdir: Path
) -> list[Finding]:
    bus_line = await _jetstream(conn, access)
    if bus_line.status == "failed":
        return [bus_line]
    pools = layout.pools(config)
    laid_out, pongs, probed = await asyncio.gather(
        doctor_layout.findings(conn.js, config),
        ping_all(conn.nc),
        asyncio.gather(*(probe(conn.nc, pool, config) for pool in pools)),
    )
    hosts = {
        pong.metadata["runner_id"]: pong.metadata.get("host", "")
        for pong in pongs
        if pong.metadata and "runner_id" in pong.metadata
    }
    lines = [
        bus_line,
        *laid_out,
        *service_findings(pongs, supervisor.services_for(config), workdir),
    ]
    for pool, answer in zip(pools, probed, strict=True):
        lines.append(
            answer if isinstance(answer, Finding) else pool_finding(pool, answer, config, hosts)
        )
    return lines


async def _jetstream(conn: Connection, access: BusAccess) -> Finding:
    where = f"{access.url} reachable, logged in as {_who(access)}"
    try:
        await conn.js.account_info()
    except (TimeoutError, nats.errors.Error) as exc:
        fix = "enable JetStream on the server (`jetstream {}` in its config, or `-js`)"
        return failed("bus", f"{where}, but JetStream does not answer ({type(exc).__name__})", fix)
    return passed("bus", f"{where}, JetStream on")


def _who(access: BusAccess) -> str:
    login = access.logins.get(ROLE)
    if login is None:
        return "nobody"
    if login.creds_file:
        return f"the creds file {login.creds_file}"
    return login.user or ("a token" if login.token else "nobody")


async def ping_all(nc: Client, wait_s: float = PING_WAIT_S) -> list[Pong]:
    """Every service instance that answers one `$SRV.PING` within `wait_s`."""
    return await discovery.gather(nc, PING_ALL, PONG, wait_s)


def service_findings(pongs: list[Pong], names: list[str], workdir: Path) -> list[Finding]:
    lines = []
    for name in names:
        answering = [pong for pong in pongs if pong.name == name]
        check = f"service {name}"
        if not answering:
            log = workdir / "logs" / f"{name}.log"
            fix = f"start it (`stellaclaw up`, or `stellaclaw run {name}`); see {log}"
            lines.append(failed(check, f"no instance answers {PING_ALL}", fix))
            continue
        count = len(answering)
        versions = ", ".join(sorted({pong.version for pong in answering}))
        instances = "1 instance answers" if count == 1 else f"{count} instances answer"
        lines.append(passed(check, f"{instances} (version {versions})"))
    return lines


async def probe(nc: Client, pool: str, config: Config) -> PoolProbed | Finding:
    """What the pool's host offers, asked of whichever runner of the pool answers."""
    remote = _remote_of(pool, config)
    asked = ProbePool(remote=remote[0], path=remote[1].root) if remote else ProbePool()
    timeout_s = REMOTE_PROBE_S if remote else PROBE_S
    check = f"pool {pool}"
    try:
        msg = await nc.request(subjects.tool_probe(pool), bus.encode(asked), timeout=timeout_s)
    except nats.errors.NoRespondersError:
        fix = f"start tools (`stellaclaw up`, or `stellaclaw run tools --pool {pool}` on its host)"
        return failed(check, "no tools runner serves it", fix)
    except (TimeoutError, nats.errors.Error) as exc:
        return failed(check, f"no answer ({type(exc).__name__})", "see logs/tools.log on its host")
    error = (msg.headers or {}).get("Nats-Service-Error")
    if error:
        return failed(check, f"the runner answered {error!r}", "see logs/tools.log on its host")
    try:
        return PROBE_REPLY.decode(msg.data)
    except msgspec.DecodeError as exc:
        return failed(check, f"unreadable answer: {exc}", "run one Stellaclaw version everywhere")


def _remote_of(pool: str, config: Config) -> tuple[str, RemoteConfig] | None:
    for name, remote in config.remotes.items():
        if remote_pool(name) == pool:
            return name, remote
    return None


def pool_finding(pool: str, answer: PoolProbed, config: Config, hosts: dict[str, str]) -> Finding:
    """A remote pool: can its runner use the remote; the local pool: its sandbox."""
    host = hosts.get(answer.runner_id)
    where = f"runner {answer.runner_id}" + (f" on {host}" if host else "")
    remote = _remote_of(pool, config)
    if remote is None:
        return sandbox_finding(f"pool {pool}", where, answer, config.sandbox)
    name, table = remote
    if answer.remote_error:
        fix = f"check [remotes.{name}] for that host (see the remote {name} line)"
        return failed(f"pool {pool}", f"{where} cannot use it: {answer.remote_error}", fix)
    return passed(f"pool {pool}", f"{where} reaches {table.describe()}")


def sandbox_finding(check: str, where: str, answer: PoolProbed, settings: SandboxConfig) -> Finding:
    """Does bubblewrap work on the runner's host, and what does the default mode pick there?"""
    mode, error = settings.mode, answer.sandbox.bubblewrap_error
    if error is None:
        picked = sandbox.describe(sandbox.resolve(mode, answer.sandbox), answer.sandbox.network)
        return passed(check, f"{where}: bubblewrap works; {mode} → {picked}")
    install = "install bubblewrap on that host (or fix sandbox.bwrap_path)"
    if mode == "bubblewrap":
        return failed(
            check, f"{where}: bubblewrap cannot run: {error}", f"{install}; commands fail"
        )
    if mode == "auto":
        found = f"{where}: auto runs commands unconfined (subprocess): {error}"
        return warned(check, found, f'{install}, or set sandbox.mode = "subprocess" to accept it')
    return passed(check, f"{where}: sandbox.mode {mode} (bubblewrap fails there: {error})")
