"""The session head in KV `sc_session/<session>` (DESIGN §5): the input cursor and the owner's
fencing revision.

An owner writes its lease revision into the head by compare-and-set when it takes the session,
and every later write is a compare-and-set on the head's revision: once another owner has taken
over, a stale owner's write fails (FencedError) and it stops at once.
"""

import msgspec
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from services.session.history_store import FencedError
from shared import bus, subjects


class Head(msgspec.Struct, frozen=True, kw_only=True):
    """What survives the owner: how far the inputs were taken, and by which lease."""

    cursor: int = 0  # the SC_SESS sequence of the last input taken
    owner_revision: int = 0


class Held(msgspec.Struct, frozen=True, kw_only=True):
    """A head as its owner last stored it, and the KV revision that fences the next write."""

    head: Head
    revision: int


_HEAD: msgspec.json.Decoder[Head] = msgspec.json.Decoder(Head)


async def take(conn: bus.Connection, kv: KeyValue, session_id: str, lease_revision: int) -> Held:
    """The head, now naming this owner's lease (FencedError when a newer owner wrote it)."""
    try:
        entry = await kv.get(session_id)
    except KeyNotFoundError:
        entry = None
    head, revision = Head(), 0
    if entry is not None and entry.value:
        where = f"{subjects.SESSION_BUCKET}/{session_id}"
        found = await bus.decoded(conn, _HEAD, entry.value, where, entry.revision or 0)
        if found is None:
            raise RuntimeError(f"the head of session {session_id!r} ({where}) cannot be read")
        head, revision = found, entry.revision or 0
    if head.owner_revision > lease_revision:
        raise FencedError(f"session {session_id} was taken by a newer lease")
    updated = msgspec.structs.replace(head, owner_revision=lease_revision)
    return await _store(kv, session_id, updated, revision)


async def advance(kv: KeyValue, session_id: str, held: Held, cursor: int) -> Held:
    return await _store(
        kv, session_id, msgspec.structs.replace(held.head, cursor=cursor), held.revision
    )


async def _store(kv: KeyValue, session_id: str, head: Head, revision: int) -> Held:
    value = msgspec.json.encode(head)
    try:
        if revision:
            revision = await kv.update(session_id, value, last=revision)
        else:
            revision = await kv.create(session_id, value)
    except KeyWrongLastSequenceError:
        raise FencedError(f"the head of session {session_id} changed under its owner") from None
    return Held(head=head, revision=revision)
