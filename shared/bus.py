"""The bus plumbing every service shares: connect, publish, consume, report.

`consume()` is the one place that decides what happens to a JetStream message (STYLE 25):
    decoded and handled             -> ack
    undecodable, or InputError      -> term, counted, reported on sc.evt.bad_message
    TransientError                  -> kept and retried here with backoff (heartbeating
                                       in_progress): a long outage never dead-letters it
    any other exception             -> logged, nak with backoff (the service stays up)
    max_deliver failed handlings    -> term, counted, reported on sc.evt.dead_letter, so one
                                       poison message never holds a lane
A failed handling is a handler error or a delivery that ended without a result (a crash).
"""

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec
import nats
from nats import micro
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.js import JetStreamContext
from nats.js.api import PubAck
from nats.js.errors import (
    BucketNotFoundError,
    NoStreamResponseError,
    NotFoundError,
    ServiceUnavailableError,
)
from nats.js.kv import KeyValue
from nats.micro.request import Request
from nats.micro.service import Service

from shared import logging as service_logging
from shared import process_stats, redaction, subjects
from shared.connection import BusAccess, Connection, Credential, connected
from shared.errors import ConfigError, InputError, ModelBehaviorError, TransientError
from shared.ids import SessionId, new_id
from shared.messages.contract import BusMessage
from shared.messages.events import BadMessage, DeadLettered
from shared.messages.session import WakeSession

M = TypeVar("M")
Handler = Callable[[M, "Envelope"], Awaitable[None]]
PUBLISH_RETRY_S = 30.0  # a cluster election takes 4-8 s; retries keep the same msg id
FETCH_WAIT_S = 5.0  # a pull's long poll; a stop cuts it short
MAX_BACKOFF_S = 60.0
ALREADY_WOKEN = 10077  # SC_WAKE's refusal of a second wake for one session
_ENCODER = msgspec.json.Encoder()
log = logging.getLogger(__name__)


class Consumer(msgspec.Struct, frozen=True, kw_only=True):
    """A durable pull consumer (made by the launcher, `shared.layout`) and how it is served."""

    stream: str
    durable: str
    filter_subject: str
    max_ack_pending: int = 1000
    ack_wait_s: float = 30.0
    max_deliver: int = 10  # failed handlings before a message is dead-lettered
    max_backoff_s: float = MAX_BACKOFF_S  # the longest wait between retries of a transient error


class Envelope:
    """What a handler may know about the JetStream message it handles."""

    def __init__(self, msg: Msg) -> None:
        self._msg = msg
        self.subject = msg.subject
        self.stream = msg.metadata.stream
        self.stream_seq = msg.metadata.sequence.stream
        self.num_delivered = msg.metadata.num_delivered
        headers = msg.headers or {}
        self.trace = headers.get(subjects.TRACE_HEADER, "-")
        self.conv = headers.get(subjects.CONV_HEADER, "-")

    async def in_progress(self) -> None:
        """Tell the server the work goes on, so the message is not redelivered meanwhile."""
        await self._msg.in_progress()


def encode(message: BusMessage) -> bytes:
    return _ENCODER.encode(message)


async def publish(
    conn: Connection,
    subject: str,
    message: BusMessage,
    *,
    msg_id: str,
    headers: dict[str, str] | None = None,
) -> PubAck:
    """Publish to JetStream with `Nats-Msg-Id`, retrying for PUBLISH_RETRY_S with the same id.

    An output (`sc.out.…`) is scrubbed of every secret this process holds first.
    """
    headers = {
        **(headers or {}),
        subjects.MSG_ID_HEADER: msg_id,
        subjects.TRACE_HEADER: service_logging.trace_var.get(),
    }
    conv = service_logging.conv_var.get()
    if conv != "-":
        headers[subjects.CONV_HEADER] = conv
    payload = encode(message)
    if conn.scrubbed and subjects.is_outbound(subject):
        payload = redaction.scrub_json(payload, conn.scrubbed)
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
    sub = await bind(conn, consumer)
    lane = Lane(consumer=consumer, decoder=decoder, stop=stop)
    stopping = asyncio.ensure_future(stop.wait())
    try:
        while not stop.is_set():
            for msg in await fetch_next(sub, consumer, stopping):
                await deliver(conn, msg, lane, handle)
    finally:
        stopping.cancel()
        with contextlib.suppress(nats.errors.Error):
            await sub.unsubscribe()


async def fetch_next(
    sub: JetStreamContext.PullSubscription, consumer: Consumer, stopping: asyncio.Future[Any]
) -> list[Msg]:
    """The next message, or none after a long poll, a stop or bus trouble."""
    fetching = asyncio.ensure_future(sub.fetch(1, timeout=FETCH_WAIT_S))
    await asyncio.wait({fetching, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if not fetching.done():  # stopping: what the server sends now goes to the next process
        fetching.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await fetching
        return []
    try:
        return fetching.result()
    except TimeoutError:
        return []
    except nats.errors.Error as exc:
        log.warning("fetch from %s failed: %r; retrying", consumer.durable, exc)
        await asyncio.wait({stopping}, timeout=0.5)
        return []


async def bind(conn: Connection, consumer: Consumer) -> JetStreamContext.PullSubscription:
    """Bind the launcher's durable; a missing durable is the operator's to create (exit 2)."""
    for attempt in range(1, 10):
        try:
            await conn.js.consumer_info(consumer.stream, consumer.durable, timeout=5.0)
            return await conn.js.pull_subscribe_bind(
                durable=consumer.durable, stream=consumer.stream
            )
        except NotFoundError:
            raise ConfigError(
                f"bus: durable {consumer.durable} of stream {consumer.stream} does not exist; "
                "`stellaclaw up` or `stellaclaw migrate` creates the bus layout"
            ) from None
        except (TimeoutError, nats.errors.Error) as exc:
            log.warning("cannot bind %s yet: %r", consumer.durable, exc)
            await asyncio.sleep(0.1 * attempt)
    raise TransientError(f"cannot bind durable {consumer.durable} on {consumer.stream}")


async def keys(kv: KeyValue, pattern: str) -> list[str]:
    """The live keys matching a subject-style `pattern` (`album.*`). (nats-py's `keys(filters)`
    matches substrings, not wildcards, and reads every key.)"""
    watcher = await kv.watch(pattern, ignore_deletes=True, meta_only=True)
    found = []
    try:
        async for entry in watcher:
            if entry is None:  # the end of the current values
                break
            found.append(entry.key)
    finally:
        with contextlib.suppress(nats.errors.Error):
            await watcher.stop()  # type: ignore[no-untyped-call]
    return found


async def bucket(conn: Connection, name: str) -> KeyValue:
    """Bind a KV bucket the launcher made; a missing one is the operator's to create (exit 2)."""
    try:
        return await conn.js.key_value(name)
    except BucketNotFoundError:
        raise ConfigError(
            f"bus: bucket {name} does not exist; `stellaclaw up` or `stellaclaw migrate` "
            "creates the bus layout"
        ) from None


class Lane(msgspec.Struct, frozen=True, kw_only=True):
    """What `deliver` needs of the consumer loop it serves."""

    consumer: Consumer
    decoder: msgspec.json.Decoder[Any]
    stop: asyncio.Event


async def deliver(
    conn: Connection, msg: Msg, lane: Lane, handle: Handler[M], *, ignored: int = 0
) -> None:
    """Handle one message by the policy above; `ignored` deliveries of it were hand-backs of the
    consumer loop's own (never failed handlings), so they count toward no dead letter."""
    envelope = Envelope(msg)
    envelope.num_delivered -= ignored
    service_logging.trace_var.set(envelope.trace)
    service_logging.conv_var.set(envelope.conv)
    if envelope.num_delivered > lane.consumer.max_deliver:
        reason = "each earlier delivery ended without a result (a crash or a hang)"
        await dead_letter(conn, msg, reason)
        return
    try:
        message = lane.decoder.decode(msg.data)
    except msgspec.DecodeError as exc:  # bad JSON or the wrong shape: redelivery cannot fix it
        await reject(conn, msg, f"malformed message: {exc}")
        return
    await _handle(conn, msg, envelope, lane, lambda: handle(message, envelope))


async def _handle(
    conn: Connection,
    msg: Msg,
    envelope: Envelope,
    lane: Lane,
    attempt: Callable[[], Awaitable[None]],
) -> None:
    waits = 0
    while True:
        try:
            await attempt()
        except (InputError, ModelBehaviorError) as exc:
            await reject(conn, msg, str(exc))
        except TransientError as exc:
            waits += 1
            delay_s = min(max(exc.retry_after_s, backoff_s(waits)), lane.consumer.max_backoff_s)
            log.warning("will retry %s in %.1f s: %s", msg.subject, delay_s, exc)
            if await _hold(envelope, delay_s, lane):
                continue
            await msg.nak()  # stopping: the next process takes it at once
        except Exception as exc:  # the one boundary: log it, retry later, stay up
            conn.counters["failed"] += 1
            log.exception("handler failed on %s seq=%d", msg.subject, envelope.stream_seq)
            if envelope.num_delivered >= lane.consumer.max_deliver:
                await dead_letter(conn, msg, f"{type(exc).__name__}: {exc}")
            else:
                await msg.nak(delay=backoff_s(envelope.num_delivered))
        else:
            conn.counters["handled"] += 1
            await msg.ack()
        return


async def _hold(envelope: Envelope, delay_s: float, lane: Lane) -> bool:
    """Wait `delay_s` with the message in hand, heartbeating; False when stopping."""
    loop = asyncio.get_running_loop()
    until = loop.time() + delay_s
    beat_s = max(0.5, lane.consumer.ack_wait_s / 3)
    while (left := until - loop.time()) > 0:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(min(left, beat_s)):
                await lane.stop.wait()
        if lane.stop.is_set():
            return False
        with contextlib.suppress(nats.errors.Error):
            await envelope.in_progress()
    return True


async def reject(conn: Connection, msg: Msg, reason: str) -> None:
    """Report a message that can never be handled, then terminate it (a crash in between
    reports it again under the same id: the report is kept once)."""
    await report_bad(conn, msg.subject, reason, stream_seq=msg.metadata.sequence.stream)
    await msg.term()


async def report_bad(conn: Connection, subject: str, reason: str, *, stream_seq: int = 0) -> None:
    """Count and report bad bus data (on a consumed stream, a direct read or a core subject)."""
    conn.counters["bad_messages"] += 1
    log.warning("bad message on %s seq=%d: %s", subject, stream_seq, reason[:300])
    fact = BadMessage(service=conn.service, subject=subject, stream_seq=stream_seq, reason=reason)
    msg_id = f"bad:{subject}:{stream_seq}" if stream_seq else f"bad:{subject}:{new_id()}"
    try:
        await publish(conn, subjects.BAD_MESSAGE_EVENT, fact, msg_id=msg_id)
    except TransientError:
        log.warning("could not report the bad message on %s", subjects.BAD_MESSAGE_EVENT)


async def decoded(
    conn: Connection, decoder: msgspec.json.Decoder[M], data: bytes, subject: str, seq: int = 0
) -> M | None:
    """Bus data read outside a consumer loop (a direct read, a core subscription, a KV entry),
    or None once it is counted and reported as bad: never an exception for its caller."""
    try:
        return decoder.decode(data)
    except msgspec.DecodeError as exc:
        await report_bad(conn, subject, f"malformed message: {exc}", stream_seq=seq)
        return None


async def dead_letter(conn: Connection, msg: Msg, last_error: str) -> None:
    """Report a message after `max_deliver` failed handlings, then terminate it."""
    meta = msg.metadata
    conn.counters["dead_letters"] += 1
    log.error(
        "dead-lettered %s seq=%d after %d deliveries: %s",
        msg.subject,
        meta.sequence.stream,
        meta.num_delivered,
        last_error[:300],
    )
    fact = DeadLettered(
        service=conn.service,
        subject=msg.subject,
        stream=meta.stream,
        stream_seq=meta.sequence.stream,
        deliveries=meta.num_delivered,
        last_error=last_error,
    )
    msg_id = f"dead:{meta.stream}:{meta.sequence.stream}"
    try:
        await publish(conn, subjects.DEAD_LETTER_EVENT, fact, msg_id=msg_id)
    except TransientError:
        log.warning("could not report the dead letter on %s", subjects.DEAD_LETTER_EVENT)
    await msg.term()


async def wake(conn: Connection, session_id: SessionId, msg_id: str, seq: int = 0) -> None:
    """Tell the session replicas a session has input (SC_WAKE), the one stored at `seq` if
    known. SC_WAKE keeps one wake per session, so a refusal as "already woken" (err 10077)
    means the same and is success."""
    try:
        wake = WakeSession(session_id=session_id, seq=seq)
        await publish(conn, subjects.wake(session_id), wake, msg_id=msg_id)
    except ServiceUnavailableError as exc:
        if exc.err_code != ALREADY_WOKEN:
            raise


def backoff_s(num_delivered: int) -> float:
    """1 s, doubling per delivery, at most MAX_BACKOFF_S."""
    return float(min(MAX_BACKOFF_S, 2 ** max(0, num_delivered - 1)))


async def register(
    conn: Connection, description: str, version: str, metadata: dict[str, str] | None = None
) -> Service:
    """Make this process discoverable with `$SRV.PING/INFO/STATS` (nats.micro), with its host,
    its pid and `metadata` in its INFO (a tool runner: its pools and runner id).

    The `counters` endpoint (also in STATS data) answers with the counters and `rss_bytes`.
    """
    service = await micro.add_service(
        conn.nc,
        name=conn.service,
        version=version,
        description=description,
        metadata={"host": socket.gethostname(), "pid": str(os.getpid()), **(metadata or {})},
        stats_handler=lambda _endpoint: process_stats.reported(conn.counters),
    )

    async def counters(request: Request) -> None:
        await request.respond(_ENCODER.encode(process_stats.reported(conn.counters)))

    await service.add_endpoint(
        name="counters", subject=subjects.counters(conn.service), handler=counters
    )
    await conn.nc.flush()  # the first request must not race the subscriptions
    return service


__all__ = ["BusAccess", "Connection", "Credential", "connected"]  # re-exported for the services
