"""The bus plumbing every service shares: connect, lay out streams, publish, consume.

`consume()` is the one place that decides what happens to a JetStream message (STYLE 25):
    decoded and handled          -> ack
    undecodable, or InputError   -> term, counted, reported on sc.evt.bad_message
    TransientError               -> nak(delay=retry_after_s)
    any other exception          -> logged, nak with backoff (the service stays up)
"""

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

import msgspec
import nats
from nats import micro
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import ConnectionClosedError, NoRespondersError, NoServersError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, PubAck
from nats.js.errors import NoStreamResponseError
from nats.micro.request import Request
from nats.micro.service import Service

from shared import logging as service_logging
from shared import subjects
from shared.errors import InputError, ModelBehaviorError, TransientError
from shared.messages.contract import BusMessage
from shared.messages.events import BadMessage

M = TypeVar("M")
Handler = Callable[[M, "Envelope"], Awaitable[None]]
PUBLISH_RETRY_S = 30.0  # a cluster election takes 4-8 s; retries keep the same msg id
_ENCODER = msgspec.json.Encoder()
log = logging.getLogger(__name__)


class Connection:
    """One service's NATS connection, its JetStream context and its message counters."""

    def __init__(self, nc: Client, service: str) -> None:
        self.nc = nc
        self.js: JetStreamContext = nc.jetstream(timeout=10.0)
        self.service = service
        self.counters: Counter[str] = Counter()


class Consumer(msgspec.Struct, frozen=True, kw_only=True):
    """A durable pull consumer: which stream, which subjects, how many un-acked at once."""

    stream: str
    durable: str
    filter_subject: str
    max_ack_pending: int = 1000
    ack_wait_s: float = 30.0


class Envelope:
    """What a handler may know about the JetStream message it handles."""

    def __init__(self, msg: Msg) -> None:
        self._msg = msg
        self.subject = msg.subject
        self.stream_seq = msg.metadata.sequence.stream
        self.num_delivered = msg.metadata.num_delivered
        headers = msg.headers or {}
        self.trace = headers.get(subjects.TRACE_HEADER, "-")
        self.conv = headers.get(subjects.CONV_HEADER, "-")

    async def in_progress(self) -> None:
        """Tell the server the work goes on, so the message is not redelivered meanwhile."""
        await self._msg.in_progress()


@asynccontextmanager
async def connected(
    url: str, service: str, *, connect_s: float = 30.0
) -> AsyncIterator[Connection]:
    """Connect (retrying up to `connect_s`), reconnect forever after, drain on the way out."""
    closing = asyncio.Event()

    async def disconnected() -> None:
        if not closing.is_set():  # draining on the way out disconnects too; that is no news
            log.warning("nats: disconnected; reconnecting")

    nc = await _connect(url, service, connect_s, disconnected)
    try:
        yield Connection(nc, service)
    finally:
        closing.set()
        if not nc.is_closed:
            try:
                async with asyncio.timeout(10):
                    await nc.drain()
            except (TimeoutError, ConnectionClosedError):
                await nc.close()


async def _connect(
    url: str, service: str, connect_s: float, disconnected: Callable[[], Awaitable[None]]
) -> Client:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + connect_s
    delay_s = 0.1
    while True:
        try:
            return await nats.connect(
                url,
                name=service,
                connect_timeout=2,
                reconnect_time_wait=0.5,
                max_reconnect_attempts=-1,
                error_cb=_log_error,
                disconnected_cb=disconnected,
            )
        except (NoServersError, OSError, TimeoutError) as exc:
            if loop.time() + delay_s > deadline:
                raise TransientError(f"cannot reach NATS at {url}: {exc}") from exc
            await asyncio.sleep(delay_s)
            delay_s = min(delay_s * 2, 2.0)


async def _log_error(exc: Exception) -> None:
    log.warning("nats: %s", exc)


def encode(message: BusMessage) -> bytes:
    return _ENCODER.encode(message)


async def publish(
    conn: Connection,
    subject: str,
    message: BusMessage,
    *,
    msg_id: str,
    conv: str | None = None,
) -> PubAck:
    """Publish to JetStream with `Nats-Msg-Id`, retrying for PUBLISH_RETRY_S with the same id."""
    headers = {
        subjects.MSG_ID_HEADER: msg_id,
        subjects.TRACE_HEADER: service_logging.trace_var.get(),
    }
    conv = conv or service_logging.conv_var.get()
    if conv != "-":
        headers[subjects.CONV_HEADER] = conv
    payload = encode(message)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + PUBLISH_RETRY_S
    delay_s = 0.05
    while True:
        try:
            return await conn.js.publish(subject, payload, headers=headers, timeout=5.0)
        except (TimeoutError, NoRespondersError, NoStreamResponseError) as exc:
            if loop.time() + delay_s > deadline:
                raise TransientError(f"publish to {subject} not acknowledged: {exc!r}") from exc
            log.warning("publish to %s not acknowledged; retrying", subject)
            await asyncio.sleep(delay_s)
            delay_s = min(delay_s * 2, 2.0)


async def consume(
    conn: Connection,
    consumer: Consumer,
    decoder: msgspec.json.Decoder[M],
    handle: Handler[M],
    stop: asyncio.Event,
) -> None:
    """Pull one message at a time and settle each by the policy above, until `stop` is set.

    Bus trouble (a reconnect, JetStream briefly unavailable) is waited out, never fatal.
    """
    sub = await _subscribe(conn, consumer)
    failures = 0
    try:
        while not stop.is_set():
            try:
                batch = await sub.fetch(1, timeout=1.0)
            except TimeoutError:
                continue
            except nats.errors.Error as exc:
                failures += 1
                log.warning("fetch from %s failed: %r; retrying", consumer.durable, exc)
                await asyncio.sleep(min(2.0, 0.05 * 2**failures))
                continue
            failures = 0
            for msg in batch:
                await deliver(conn, msg, decoder, handle)
    finally:
        await sub.unsubscribe()


async def _subscribe(conn: Connection, consumer: Consumer) -> JetStreamContext.PullSubscription:
    config = ConsumerConfig(
        ack_policy=AckPolicy.EXPLICIT,
        max_ack_pending=consumer.max_ack_pending,
        ack_wait=consumer.ack_wait_s,
        filter_subject=consumer.filter_subject,
    )
    for attempt in range(1, 10):
        try:
            return await conn.js.pull_subscribe(
                consumer.filter_subject,
                durable=consumer.durable,
                stream=consumer.stream,
                config=config,
            )
        except nats.errors.Error as exc:
            log.warning("cannot bind %s yet: %r", consumer.durable, exc)
            await asyncio.sleep(0.1 * attempt)
    raise TransientError(f"cannot bind durable {consumer.durable} on {consumer.stream}")


async def deliver(
    conn: Connection, msg: Msg, decoder: msgspec.json.Decoder[M], handle: Handler[M]
) -> None:
    envelope = Envelope(msg)
    service_logging.trace_var.set(envelope.trace)
    service_logging.conv_var.set(envelope.conv)
    try:
        message = decoder.decode(msg.data)
    except msgspec.DecodeError as exc:  # bad JSON or the wrong shape: redelivery cannot fix it
        await reject(conn, msg, f"malformed message: {exc}")
        return
    try:
        await handle(message, envelope)
    except (InputError, ModelBehaviorError) as exc:
        await reject(conn, msg, str(exc))
    except TransientError as exc:
        log.warning("will retry %s: %s", msg.subject, exc)
        await msg.nak(delay=exc.retry_after_s)
    except Exception:  # the one boundary: log it, retry later, stay up
        conn.counters["failed"] += 1
        log.exception("handler failed on %s seq=%d", msg.subject, envelope.stream_seq)
        await msg.nak(delay=backoff_s(envelope.num_delivered))
    else:
        conn.counters["handled"] += 1
        await msg.ack()


async def reject(conn: Connection, msg: Msg, reason: str) -> None:
    """Terminate a message that can never be handled; count it and report it."""
    seq = msg.metadata.sequence.stream
    conn.counters["bad_messages"] += 1
    log.warning("terminated %s seq=%d: %s", msg.subject, seq, reason[:300])
    await msg.term()
    fact = BadMessage(service=conn.service, subject=msg.subject, stream_seq=seq, reason=reason)
    try:
        await publish(conn, subjects.BAD_MESSAGE_EVENT, fact, msg_id=f"bad:{msg.subject}:{seq}")
    except TransientError:
        log.warning("could not report the bad message on %s", subjects.BAD_MESSAGE_EVENT)


def backoff_s(num_delivered: int) -> float:
    """1 s, doubling per delivery, at most 60 s."""
    return float(min(60, 2 ** max(0, num_delivered - 1)))


async def register(conn: Connection, description: str, version: str) -> Service:
    """Make this process discoverable with `$SRV.PING/INFO/STATS` (nats.micro).

    The `counters` endpoint (also in STATS data) answers with the message counters.
    """
    service = await micro.add_service(
        conn.nc,
        name=conn.service,
        version=version,
        description=description,
        stats_handler=lambda _endpoint: dict(conn.counters),
    )

    async def counters(request: Request) -> None:
        await request.respond(_ENCODER.encode(dict(conn.counters)))

    await service.add_endpoint(
        name="counters", subject=subjects.counters(conn.service), handler=counters
    )
    return service
