"""One service's login to the bus: credentials, the connection, its counters (DESIGN §11).

`connected()` logs in once without reconnects first, so a refused login or an unreachable server
is a ConfigError (exit 2) instead of an endless reconnect loop; after that it reconnects forever.
Permission violations reach only `error_cb` (the call itself just times out): they are logged as
errors with their subject and counted. A bus URL may list the servers of a cluster, comma-separated;
the client tries them in turn and follows the cluster as it changes.
"""

import asyncio
import logging
import re
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import msgspec
import nats
from nats.aio.client import Client
from nats.errors import NoServersError
from nats.js import JetStreamContext

from shared import redaction, subjects
from shared.errors import ConfigError

JWT_MARKER = "BEGIN NATS USER JWT"  # a `.creds` file of the operator (JWT) mode
USER_SEED = re.compile(r"SU[A-Z2-7]{56}")  # an NKey user seed, as `nk -gen user` writes it
log = logging.getLogger(__name__)


class Credential(msgspec.Struct, frozen=True, kw_only=True):
    """A NATS login: user and password, a token, or a creds file (a JWT `.creds` file or an NKey
    user seed file)."""

    user: str | None = None
    password: str | None = None
    token: str | None = None
    creds_file: str | None = None


class BusAccess(msgspec.Struct, frozen=True, kw_only=True):
    """Where the bus is and how this process logs in, by role; what it must never publish."""

    url: str
    logins: dict[str, Credential] = msgspec.field(default_factory=dict)
    secrets: tuple[str, ...] = ()  # scrubbed from every output (DESIGN §11)


class Connection:
    """One service's NATS connection, its JetStream context and its message counters."""

    def __init__(self, nc: Client, service: str, counters: Counter[str], secrets: tuple[str, ...]):
        self.nc = nc
        self.js: JetStreamContext = nc.jetstream(timeout=10.0)
        self.service = service
        self.counters = counters
        self.secrets = secrets
        self.scrubbed = redaction.json_forms(secrets)


@asynccontextmanager
async def connected(
    access: BusAccess, service: str, *, role: str | None = None, connect_s: float = 30.0
) -> AsyncIterator[Connection]:
    """Log in as `role` (default: the service), reconnect forever after, drain on the way out.

    A refused login, or a server unreachable for `connect_s`, is a ConfigError (exit 2).
    """
    role = role or service
    counters: Counter[str] = Counter()
    closing = asyncio.Event()
    options = _options(access, role, counters, closing)
    await _probe(access.url, options, connect_s)
    nc = await nats.connect(servers(access.url), max_reconnect_attempts=-1, **options)
    try:
        yield Connection(nc, service, counters, access.secrets)
    finally:
        closing.set()
        await _close(nc)


def _options(
    access: BusAccess, role: str, counters: Counter[str], closing: asyncio.Event
) -> dict[str, Any]:
    login = access.logins.get(role, Credential())

    async def errored(exc: Exception) -> None:
        text = str(exc)
        if "permissions violation" in text.lower():  # the call itself only times out
            counters["permission_violations"] += 1
            log.error("nats: %s (role %s)", text, role)
        elif not closing.is_set():
            log.warning("nats: %s", text)

    async def disconnected() -> None:
        if not closing.is_set():  # draining on the way out disconnects too; that is no news
            log.warning("nats: disconnected; reconnecting")

    return {
        "name": role,
        **login_options(login, role),
        "inbox_prefix": subjects.inbox_prefix(role),
        "connect_timeout": 2,
        "reconnect_time_wait": 0.5,
        "error_cb": errored,
        "disconnected_cb": disconnected,
    }


def servers(url: str) -> list[str]:
    """The servers a bus URL names: one, or a cluster's, comma-separated."""
    found = [part.strip() for part in url.split(",") if part.strip()]
    if not found:
        raise ConfigError(f"config: bus.url: {url!r} names no NATS server")
    return found


def login_options(login: Credential, role: str) -> dict[str, Any]:
    """nats-py's login options. A creds file holding a JWT (the operator mode's `.creds`) goes
    to `user_credentials`; one holding only an NKey user seed (a plain NKey user, as
    `stellaclaw deploy nats-users --format nkeys` writes) to `nkeys_seed`: nats-py cannot read a
    seed file as `.creds`. A missing, unreadable or unrecognised file is a ConfigError."""
    options: dict[str, Any] = {"user": login.user, "password": login.password, "token": login.token}
    if login.creds_file is None:
        return options
    path = Path(login.creds_file).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not a text file"
        raise ConfigError(
            f"config: bus.creds_file: cannot read {str(path)!r} (role {role}): {reason}"
        ) from None
    if JWT_MARKER in text:
        return options | {"user_credentials": str(path)}
    if USER_SEED.fullmatch(text.strip()):
        return options | {"nkeys_seed": str(path)}
    raise ConfigError(
        f"config: bus.creds_file: {str(path)!r} (role {role}) holds neither a NATS .creds file "
        "(JWT and seed) nor an NKey user seed (SU...); write it with stellaclaw deploy nats-users"
    )


async def _probe(url: str, options: dict[str, Any], connect_s: float) -> None:
    """One connection without reconnects, so a refused login fails now instead of looping."""

    async def quiet(exc: Exception) -> None:
        pass

    loop = asyncio.get_running_loop()
    deadline = loop.time() + connect_s
    delay_s = 0.1
    attempt = {**options, "error_cb": quiet, "disconnected_cb": None}
    while True:
        probe = Client()
        try:
            await probe.connect(
                servers(url), allow_reconnect=False, max_reconnect_attempts=1, **attempt
            )
        except (NoServersError, OSError, TimeoutError) as exc:
            await probe.close()
            if loop.time() + delay_s > deadline:
                raise ConfigError(f"bus: cannot reach NATS at {url}: {exc!r}") from None
            await asyncio.sleep(delay_s)
            delay_s = min(delay_s * 2, 2.0)
        except nats.errors.Error as exc:
            await probe.close()
            raise ConfigError(
                f"bus: NATS at {url} refused the login as {_who(options)}: {exc}; check bus.user, "
                f"bus.password, bus.token or bus.creds_file (or [bus.services.{options['name']}])"
            ) from None
        else:
            await probe.close()
            return


def _who(options: dict[str, Any]) -> str:
    creds = options.get("user_credentials") or options.get("nkeys_seed")
    if creds:
        return f"the creds file {creds}"
    return options["user"] or ("a token" if options["token"] else "no credentials")


async def _close(nc: Client) -> None:
    """Drain when connected (publishes flushed, un-acked work to the next process), else close."""
    if nc.is_closed:
        return
    if not nc.is_connected:
        await nc.close()
        return
    try:
        async with asyncio.timeout(5):
            await nc.drain()
    except (TimeoutError, nats.errors.Error):
        await nc.close()
