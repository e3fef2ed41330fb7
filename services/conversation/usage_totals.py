"""A conversation's usage over the last 24 h (SPEC §7.5), summed from the `ModelUsed` facts the
sessions tell on `sc.evt.usage.<conv>` (SC_EVENTS keeps a day of them)."""

import asyncio
import logging
from datetime import UTC, datetime, timedelta

import msgspec
import nats.errors

from shared import bus, subjects
from shared.messages.events import ModelUsed
from shared.messages.history import Usage, summed

DAY = timedelta(hours=24)
READ_TIMEOUT_S = 5.0
MAX_FACTS = 50_000  # a day of a very busy conversation; beyond that the oldest are not summed
USED: msgspec.json.Decoder[ModelUsed] = msgspec.json.Decoder(ModelUsed)
log = logging.getLogger(__name__)


async def last_day(conn: bus.Connection, conversation_id: str) -> Usage | None:
    """The sum of the last 24 h, or None when the bus cannot say in time."""
    try:
        async with asyncio.timeout(READ_TIMEOUT_S):
            return await _read(conn, conversation_id)
    except (TimeoutError, nats.errors.Error) as exc:
        log.warning("no 24 h usage for %s: %r", conversation_id, exc)
        return None


async def _read(conn: bus.Connection, conversation_id: str) -> Usage:
    subject = subjects.usage_event(conversation_id)
    info = await conn.js.stream_info(subjects.EVENTS_STREAM, subjects_filter=subject)
    count = sum((info.state.subjects or {}).values())
    since = datetime.now(UTC) - DAY
    facts: list[Usage] = []
    if not count:
        return Usage()
    sub = await conn.js.subscribe(subject, stream=subjects.EVENTS_STREAM, ordered_consumer=True)
    try:
        for _ in range(min(count, MAX_FACTS)):
            msg = await sub.next_msg(timeout=READ_TIMEOUT_S)
            try:
                fact = USED.decode(msg.data)
            except msgspec.DecodeError:
                continue  # not ours to report: the publisher's bad data
            if fact.at >= since:
                facts.append(fact.usage)
    finally:
        await sub.unsubscribe()
    return summed(facts)
