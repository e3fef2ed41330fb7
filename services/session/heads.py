"""The session head in KV `sc_session/<session>` (DESIGN §5, SPEC §3.10): the input cursor, the
owner's fencing revision, the turn journal, the session's type and its totals.

An owner writes its lease revision into the head by compare-and-set when it takes the session,
and every later write is a compare-and-set on the head's revision: once another owner has taken
over, a stale owner's write fails (FencedError) and it stops at once.

The journal is written when a turn starts (phase `calling_model`) and before each group of tool
calls is sent (`running_tools`, the calls `sent`, earlier ones `finished`); history tells the rest
(an answer stored is being delivered). It is cleared when the actor lets the session go idle.
"""

from datetime import datetime
from typing import Literal

import msgspec
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from services.session.history_store import FencedError
from services.session.tokens import Calibration
from shared import bus, subjects
from shared.messages.contract import Chat
from shared.messages.history import Usage
from shared.messages.session import ConversationSettings
from shared.retrying import through_elections

Phase = Literal["calling_model", "running_tools", "delivering"]
SessionType = Literal["foreground", "background", "subagent"]


class CallEntry(msgspec.Struct, frozen=True, kw_only=True):
    """A call of the running batch: sent to a runner (maybe run), or finished."""

    call_id: str
    tool: str
    state: Literal["sent", "finished"]
    idempotent: bool


class Journal(msgspec.Struct, frozen=True, kw_only=True):
    """Where the running turn is, for whoever takes the session over."""

    turn_id: str
    phase: Phase
    batch: list[CallEntry] = msgspec.field(default_factory=list)
    hist_seq: int = 0  # the SC_HIST sequence reached when this was written
    takeovers: int = 0  # owners that took this turn over after a crash (SPEC §3.9)
    handed_over: bool = False  # the last owner stopped gracefully and recorded this
    started_at: datetime | None = None
    chat: Chat | None = None  # where the turn answers, and with which settings it runs
    settings: ConversationSettings | None = None


class Head(msgspec.Struct, frozen=True, kw_only=True):
    """What survives the owner."""

    cursor: int = 0  # the SC_SESS sequence up to which every input was taken
    owner_revision: int = 0
    session_type: SessionType = "foreground"
    journal: Journal | None = None
    turns: int = 0
    usage: Usage = Usage()
    context_tokens: int = 0  # what the last model call's window held
    history_from: int = 0  # the SC_HIST sequence a rebuild reads from: the last compaction's tail
    calibrations: dict[str, Calibration] = msgspec.field(default_factory=dict)  # by model name
    compaction_failure: str = ""  # why the last compaction failed (`/status`), "" since one worked
    started_at: datetime | None = None
    can_continue: bool = False  # the last turn failed recoverably or was cut (`/continue`)
    broken: str = ""  # why the history cannot be rebuilt (an event that cannot be read)


class Held(msgspec.Struct, frozen=True, kw_only=True):
    """A head as its owner last stored it, and the KV revision that fences the next write."""

    head: Head
    revision: int


HEAD: msgspec.json.Decoder[Head] = msgspec.json.Decoder(Head)


async def read(conn: bus.Connection, kv: KeyValue, session_id: str) -> Held:
    """The head as stored (an empty one at revision 0 for a new session)."""
    try:
        entry = await kv.get(session_id)
    except KeyNotFoundError:
        return Held(head=Head(), revision=0)
    if not entry.value:
        return Held(head=Head(), revision=entry.revision or 0)
    where = f"{subjects.SESSION_BUCKET}/{session_id}"
    found = await bus.decoded(conn, HEAD, entry.value, where, entry.revision or 0)
    if found is None:
        raise RuntimeError(f"the head of session {session_id!r} ({where}) cannot be read")
    return Held(head=found, revision=entry.revision or 0)


async def take(conn: bus.Connection, kv: KeyValue, session_id: str, lease_revision: int) -> Held:
    """The head, now naming this owner's lease (FencedError when a newer owner wrote it)."""
    held = await read(conn, kv, session_id)
    if held.head.owner_revision > lease_revision:
        raise FencedError(f"session {session_id} was taken by a newer lease")
    return await store(kv, session_id, held, owner_revision=lease_revision)


async def store(kv: KeyValue, session_id: str, held: Held, **changes: object) -> Held:
    """The head with `changes`, written only if nobody wrote it since `held` was read."""
    head = msgspec.structs.replace(held.head, **changes)
    value = msgspec.json.encode(head)
    try:
        if held.revision:
            last = held.revision
            revision = await through_elections(lambda: kv.update(session_id, value, last=last))
        else:
            revision = await through_elections(lambda: kv.create(session_id, value))
    except KeyWrongLastSequenceError:
        raise FencedError(f"the head of session {session_id} changed under its owner") from None
    return Held(head=head, revision=revision)
