"""Loading and saving conversation state in KV `sc_conv`: every change is a compare-and-set."""

import logging
from collections.abc import Callable

import msgspec
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from services.conversation.state import STATE, ConversationState
from shared.errors import TransientError

MAX_ATTEMPTS = 8
log = logging.getLogger(__name__)

Change = Callable[[ConversationState | None], ConversationState]


async def load(kv: KeyValue, key: str) -> tuple[ConversationState | None, int]:
    """The state and its revision; (None, 0) for a conversation not seen yet."""
    try:
        entry = await kv.get(key)
    except KeyNotFoundError:
        return None, 0
    if entry.value is None:  # a deleted key: the conversation starts afresh
        return None, entry.revision or 0
    return STATE.decode(entry.value), entry.revision or 0


async def change(kv: KeyValue, key: str, apply: Change) -> ConversationState:
    """Apply `apply` to the current state and store it by CAS, retrying on a concurrent change."""
    for _ in range(MAX_ATTEMPTS):
        current, revision = await load(kv, key)
        updated = apply(current)
        value = msgspec.json.encode(updated)
        try:
            if revision:
                await kv.update(key, value, last=revision)
            else:
                await kv.create(key, value)
        except KeyWrongLastSequenceError:
            log.info("conversation state changed concurrently; retrying")
            continue
        return updated
    raise TransientError(f"conversation {key} kept changing under {MAX_ATTEMPTS} attempts")
