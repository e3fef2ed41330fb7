"""The read-only `observer` login of `stellaclaw status` and `stellaclaw bus`, from the config.

Only `workdir` and `[bus]` are read (with `[bus.services.observer]`'s credentials when given), so
an operator's machine needs none of the services' secrets: against an external bus the config
names its URL and the observer's credentials; against `stellaclaw up`'s embedded bus the password
is the one `up` wrote to `<workdir>/run/auth/observer`.
"""

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from services.launcher import supervisor
from shared import config as config_file
from shared import lifecycle
from shared.connection import BusAccess, Connection, connected

ROLE = "observer"
CONNECT_S = 5.0  # an operator waits this long for an unreachable bus, then reads why
T = TypeVar("T")


def access(config_path: Path, workdir: Path | None) -> BusAccess:
    located = config_file.locate(config_path, ROLE)
    where = (workdir or Path(located.workdir)).expanduser().resolve()
    credentials = located.bus.credentials(ROLE)
    secrets = [value for value in (credentials.password, credentials.token) if value]
    return lifecycle.bus_access(located.bus, where, ROLE, secrets)


def expected_services(config_path: Path) -> tuple[str, ...]:
    """The services the config runs: the five, without Telegram ingress when it has no
    `[telegram]` (as `stellaclaw up` decides)."""
    has_telegram = "telegram" in config_file.read_raw(config_path)
    return tuple(s for s in supervisor.SERVICES if s != "ingress_telegram" or has_telegram)


async def observe(bus: BusAccess, command: str, look: Callable[[Connection], Awaitable[T]]) -> T:
    """Run `look` on an observer connection named after `command`; a refused login or an
    unreachable bus is a ConfigError (exit 2)."""
    async with connected(bus, command, role=ROLE, connect_s=CONNECT_S) as conn:
        return await look(conn)
