"""Which service instances answer `$SRV.PING` (nats.micro): for the launcher's commands."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TypeVar

import msgspec
import nats
from nats.aio.client import Client

from shared import connection, subjects
from shared.bus import BusAccess, Credential
from shared.errors import ConfigError

GATHER_S = 0.5  # how long answers are collected
T = TypeVar("T")


class Pong(msgspec.Struct, frozen=True, kw_only=True):
    """The part of a `$SRV.PING` answer that names an instance."""

    name: str
    instance_id: str = msgspec.field(name="id")


_PONG = msgspec.json.Decoder(Pong)


class Discovery:
    """A read-only login that asks who answers."""

    def __init__(self, nc: Client) -> None:
        self.nc = nc

    @classmethod
    @asynccontextmanager
    async def connected(cls, access: BusAccess, role: str) -> AsyncIterator["Discovery"]:
        login = access.logins.get(role, Credential())
        try:
            nc = await nats.connect(
                connection.servers(access.url),
                **connection.login_options(login, role),
                inbox_prefix=subjects.inbox_prefix(role),
                connect_timeout=5,
                allow_reconnect=False,
                max_reconnect_attempts=1,
            )
        except (nats.errors.Error, OSError, TimeoutError) as exc:
            raise ConfigError(f"bus: cannot log in to {access.url} as {role}: {exc}") from None
        try:
            yield cls(nc)
        finally:
            await nc.close()

    async def instances(self, service: str | None = None, wait_s: float = GATHER_S) -> list[str]:
        """The instance ids answering `$SRV.PING` (of `service`, or of every service)."""
        return [pong.instance_id for pong in await self.pongs(service, wait_s)]

    async def pongs(self, service: str | None = None, wait_s: float = GATHER_S) -> list[Pong]:
        subject = f"$SRV.PING.{service}" if service else "$SRV.PING"
        return await gather(self.nc, subject, _PONG, wait_s)


async def gather(
    nc: Client, subject: str, decoder: msgspec.json.Decoder[T], wait_s: float
) -> list[T]:
    """Every answer to one broadcast request on `subject` within `wait_s` (`nc.request` keeps
    only the first; every instance answers and there is no last one). Answers of another shape
    (another application's services on a shared bus) are left out."""
    found: list[T] = []
    inbox = nc.new_inbox()
    answers = await nc.subscribe(inbox)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    try:
        await nc.publish(subject, b"", reply=inbox)
        while (left := deadline - loop.time()) > 0:
            try:
                msg = await answers.next_msg(timeout=left)
            except TimeoutError:
                break
            with contextlib.suppress(msgspec.DecodeError):
                found.append(decoder.decode(msg.data))
    finally:
        with contextlib.suppress(nats.errors.Error):
            await answers.unsubscribe()
    return found
