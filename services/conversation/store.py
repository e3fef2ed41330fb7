"""Loading and saving conversation state in KV `sc_conv`: every change is a compare-and-set."""

import functools
import logging
from collections import OrderedDict
from collections.abc import Callable

import msgspec
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from services.conversation.state import STATE, ConversationState
from shared import bus, subjects
from shared.errors import TransientError
from shared.retrying import through_elections

MAX_ATTEMPTS = 8
CACHE_SIZE = 2_000
log = logging.getLogger(__name__)

Change = Callable[[ConversationState | None], ConversationState]
Apply = Callable[[ConversationState], ConversationState]  # a change of a known state


async def load(
    conn: bus.Connection, kv: KeyValue, key: str
) -> tuple[ConversationState | None, int]:
    """The state and its revision; (None, 0) for a conversation not seen yet.

    An unreadable state is reported as a bad message and fails the handling: retried, then
    dead-lettered, never silently replaced by a new conversation.
    """
    try:
        entry = await through_elections(lambda: kv.get(key))
    except KeyNotFoundError:
        return None, 0
    if entry.value is None:  # a deleted key: the conversation starts afresh
        return None, entry.revision or 0
    where = f"{subjects.CONV_BUCKET}/{key}"
    state = await bus.decoded(conn, STATE, entry.value, where, entry.revision or 0)
    if state is None:
        raise RuntimeError(f"the state of conversation {key!r} ({where}) cannot be read")
    return state, entry.revision or 0


class Cache:
    """The last state this instance stored per conversation, so a change usually skips the read.

    The CAS still guards every write: a state changed elsewhere fails it and is read afresh.
    """

    def __init__(self, size: int = CACHE_SIZE) -> None:
        self.size = size
        self.entries: OrderedDict[str, tuple[ConversationState, int]] = OrderedDict()

    def get(self, key: str) -> tuple[ConversationState, int] | None:
        entry = self.entries.get(key)
        if entry is not None:
            self.entries.move_to_end(key)
        return entry

    def put(self, key: str, state: ConversationState, revision: int) -> None:
        self.entries[key] = (state, revision)
        self.entries.move_to_end(key)
        while len(self.entries) > self.size:
            self.entries.popitem(last=False)


class Store(msgspec.Struct, frozen=True, kw_only=True):
    """The bucket, the connection that reports what it cannot read, and the cache."""

    conn: bus.Connection
    kv: KeyValue
    cache: Cache


async def change(where: Store, key: str, apply: Change) -> ConversationState:
    """Apply `apply` to the current state and store it by CAS, retrying on a concurrent change."""
    kv, cache = where.kv, where.cache
    known = cache.get(key)
    for _ in range(MAX_ATTEMPTS):
        current, revision = known if known else await load(where.conn, kv, key)
        known = None
        updated = apply(current)
        value = msgspec.json.encode(updated)
        try:
            if revision:
                change = functools.partial(kv.update, key, value, last=revision)
            else:
                change = functools.partial(kv.create, key, value)
            stored = await through_elections(change)
        except KeyWrongLastSequenceError:
            log.info("conversation state changed elsewhere; reading it again")
            continue
        cache.put(key, updated, stored)
        return updated
    raise TransientError(f"conversation {key} kept changing under {MAX_ATTEMPTS} attempts")


async def marked(where: Store, pattern: str) -> list[str]:
    """The bucket's keys matching `pattern` (`album.*`), none when there are none."""
    return await bus.keys(where.kv, pattern)
