"""Sent-message records in KV `sc_delivery`, one per output: what reached the platform so far.

A record is stored after every part, so a redelivered output resumes after the last part sent
instead of sending it twice; `is_complete` marks an output that needs nothing more.
"""

import asyncio

import msgspec
from nats.errors import Error as NatsError
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from shared import bus, subjects
from shared.errors import TransientError
from shared.retrying import through_elections

KV_TIMEOUT_S = 10.0


class DeliveryRecord(msgspec.Struct, frozen=True, kw_only=True):
    """The platform message ids of the parts sent so far, in order."""

    message_ids: tuple[int, ...] = ()
    is_complete: bool = False
    # stored before the first part is sent: a redelivery that finds it knows a send may have
    # reached the chat unrecorded, even when the bus lost the delivery count in a crash
    is_attempted: bool = False


_RECORD: msgspec.json.Decoder[DeliveryRecord] = msgspec.json.Decoder(DeliveryRecord)
_ENCODER = msgspec.json.Encoder()


async def load(conn: bus.Connection, kv: KeyValue, key: str) -> DeliveryRecord:
    """The output's record, or an empty one when nothing of it was sent yet.

    An unreadable record is reported as a bad message and fails the handling (retried, then
    dead-lettered): sending again could repeat what reached the chat already.
    """
    try:
        async with asyncio.timeout(KV_TIMEOUT_S):
            entry = await through_elections(lambda: kv.get(key))
    except KeyNotFoundError:
        return DeliveryRecord()
    except (TimeoutError, NatsError) as exc:
        raise TransientError(f"cannot read delivery record {key!r}: {exc!r}") from exc
    if not entry.value:
        return DeliveryRecord()
    where = f"{subjects.DELIVERY_BUCKET}/{key}"
    record = await bus.decoded(conn, _RECORD, entry.value, where, entry.revision or 0)
    if record is None:
        raise RuntimeError(f"the delivery record {where} cannot be read")
    return record


async def store(kv: KeyValue, key: str, record: DeliveryRecord) -> None:
    try:
        async with asyncio.timeout(KV_TIMEOUT_S):
            await through_elections(lambda: kv.put(key, _ENCODER.encode(record)))
    except (TimeoutError, NatsError) as exc:
        raise TransientError(f"cannot store delivery record {key!r}: {exc!r}") from exc
