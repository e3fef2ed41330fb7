"""What users do on the test kit's Telegram server, as the updates Telegram makes of it.

`UpdateQueue` holds the updates and answers getUpdates (a long poll with offsets, of the types
the bot asked for in `allowed_updates`). The rest builds the update objects as Telegram does: user
messages with the `mention` and `bot_command` entities Telegram finds in their text (offsets in
UTF-16 code units), edits, button presses (`callback_query`) and the bot's own membership changes
(`my_chat_member`).
"""

import asyncio
import contextlib
import itertools
import re
from datetime import UTC, datetime
from typing import Final, TypedDict

import msgspec

from tests.kit.telegram_wire import (
    CONFLICT,
    GROUP_TITLE,
    BotApiError,
    Entity,
    GetUpdates,
    chat_object,
    utf16_len,
)

# Telegram's patterns (tdlib's match_mentions and match_bot_commands): a mention is `@` and 2-32
# name characters, kept from 4 on; a command is `/`, 1-64 characters and an optional `@bot` of
# 3-32, the `@bot` inside the one bot_command entity; neither may touch a word character.
_MENTION: Final = re.compile(r"(?<!\w)@([A-Za-z0-9_]{2,32})(?!\w)")
# What getUpdates leaves out unless `allowed_updates` names it.
_NOT_BY_DEFAULT: Final = frozenset({"chat_member", "message_reaction", "message_reaction_count"})
_SHORT_MENTIONS: Final = frozenset({"gif", "vid", "pic"})
_COMMAND: Final = re.compile(r"(?<![\w/<>])/[A-Za-z0-9_]{1,64}(?:@[A-Za-z0-9_]{3,32})?(?![\w/<>@])")


class Sender(TypedDict, total=False):
    """Who sends a user's message, and where: the Bot API fields they fill in, all optional."""

    user_id: int | None  # the sender: the private chat's own id unless given; needed in groups
    first_name: str  # "Ada"
    chat_type: str  # "private", "group", "supergroup"
    message_thread_id: int | None  # a forum topic
    title: str  # a group's; GROUP_TITLE
    reply_to_message_id: int | None


class UpdateQueue:
    """The updates users made, offered by getUpdates until an offset confirms them."""

    def __init__(self) -> None:
        self.confirmed_offset: int | None = None
        self._pending: list[tuple[int, dict[str, object]]] = []
        self._queued: dict[int, dict[str, object]] = {}
        self._update_ids = itertools.count(1000)
        self._wake = asyncio.Event()
        self._polls = 0
        self._is_closing = False
        self._allowed: frozenset[str] | None = None  # None: Telegram's default set

    def add(self, fields: dict[str, object]) -> int:
        """Queue an update (`{"message": {...}}`, ...); its update_id."""
        update_id = next(self._update_ids)
        self._queued[update_id] = {"update_id": update_id, **fields}
        self.replay(update_id)
        return update_id

    def get(self, update_id: int, field: str) -> dict[str, object]:
        """The object (`message`, `callback_query`, ...) of a queued update."""
        found = self._queued[update_id].get(field)
        if not isinstance(found, dict):
            raise ValueError(f"update {update_id} has no {field}")
        return found

    def replay(self, update_id: int) -> None:
        """Offer a queued update again, as if Telegram had lost its confirmation."""
        if all(pending_id != update_id for pending_id, _ in self._pending):
            self._pending.append((update_id, self._queued[update_id]))
        self._pending.sort(key=lambda pair: pair[0])
        self._wake.set()

    def close(self) -> None:
        """Long polls return at once instead of holding the shutdown."""
        self._is_closing = True
        self._wake.set()

    async def poll(self, params: GetUpdates) -> list[dict[str, object]]:
        if params.offset is not None and params.offset > 0:
            self._pending = [pair for pair in self._pending if pair[0] >= params.offset]
            self.confirmed_offset = max(self.confirmed_offset or 0, params.offset)
        if params.allowed_updates is not None:  # kept for later calls, as Telegram keeps it
            self._allowed = frozenset(params.allowed_updates) or None
        self._polls += 1
        poll = self._polls
        self._wake.set()  # an earlier long poll ends with 409 Conflict, as on Telegram
        self._wake = wake = asyncio.Event()
        if not self._pending and params.timeout > 0 and not self._is_closing:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(params.timeout):
                    await wake.wait()
        if poll != self._polls:
            raise BotApiError(409, CONFLICT)
        self._pending = [pair for pair in self._pending if self._is_allowed(pair[1])]
        limit = min(max(params.limit, 1), 100)
        return [update for _, update in self._pending[:limit]]

    def _is_allowed(self, update: dict[str, object]) -> bool:
        """Whether the bot asked for this type of update; Telegram drops the others."""
        kind = next(key for key in update if key != "update_id")
        return kind not in _NOT_BY_DEFAULT if self._allowed is None else kind in self._allowed


def now() -> int:
    return int(datetime.now(UTC).timestamp())


def text_entities(text: str) -> list[Entity]:
    """The mentions and bot commands Telegram marks in a text, in order."""
    found = [
        Entity(type="mention", offset=utf16_len(text[: m.start()]), length=utf16_len(m[0]))
        for m in _MENTION.finditer(text)
        if len(m[1]) >= 4 or m[1].lower() in _SHORT_MENTIONS
    ]
    found += [
        Entity(type="bot_command", offset=utf16_len(text[: m.start()]), length=utf16_len(m[0]))
        for m in _COMMAND.finditer(text)
    ]
    return sorted(found, key=lambda entity: entity.offset)


def with_entities(content: dict[str, object]) -> dict[str, object]:
    """`content` with the entities of its text and caption, unless it brings its own."""
    marked = dict(content)
    for field, entities_field in (("text", "entities"), ("caption", "caption_entities")):
        text = content.get(field)
        entities = text_entities(text) if isinstance(text, str) else []
        if entities and entities_field not in content:
            marked[entities_field] = msgspec.to_builtins(entities)
    return marked


def chat_and_sender(chat_id: int, sender: Sender) -> tuple[dict[str, object], dict[str, object]]:
    """The Chat and the User of a message a user sends."""
    chat_type = sender.get("chat_type", "private")
    user_id = sender.get("user_id")
    if user_id is None and chat_type != "private":
        raise ValueError(f"a message in a {chat_type} chat needs user_id")
    first_name = sender.get("first_name", "Ada")
    is_forum = sender.get("message_thread_id") is not None
    title = sender.get("title", GROUP_TITLE)
    chat = chat_object(chat_id, chat_type, first_name, is_forum=is_forum, title=title)
    return chat, user_object(chat_id if user_id is None else user_id, first_name)


def user_object(user_id: int, first_name: str) -> dict[str, object]:
    return {"id": user_id, "is_bot": False, "first_name": first_name}


def user_message(
    chat: dict[str, object],
    sender: dict[str, object],
    message_id: int,
    thread_id: int | None,
    content: dict[str, object],
) -> dict[str, object]:
    """A Message a user sends; text and caption with the entities Telegram finds in them."""
    message: dict[str, object] = {
        "message_id": message_id,
        "from": sender,
        "chat": chat,
        "date": now(),
        **with_entities(content),
    }
    if thread_id is not None:
        message |= {"message_thread_id": thread_id, "is_topic_message": True}
    return message


def message_key(message: dict[str, object]) -> tuple[int, int]:
    """A message's chat id and message id."""
    chat, message_id = message["chat"], message["message_id"]
    assert isinstance(chat, dict)
    assert isinstance(chat["id"], int)
    assert isinstance(message_id, int)
    return chat["id"], message_id


def quoted(message: dict[str, object]) -> dict[str, object]:
    """A message as a reply's `reply_to_message`: without a reply of its own, as Telegram
    nests only one level."""
    return {key: value for key, value in message.items() if key != "reply_to_message"}


def edited(message: dict[str, object], new_text: str) -> dict[str, object]:
    """The message after its author edited its text (or its caption, when it has one)."""
    field = "caption" if "caption" in message else "text"
    kept = {k: v for k, v in message.items() if k not in {"entities", "caption_entities"}}
    return kept | with_entities({field: new_text}) | {"edit_date": now()}


def callback_query(
    query_id: str, presser: dict[str, object], chat_id: int, message: dict[str, object], data: str
) -> dict[str, object]:
    """A press of an inline button under the bot's `message` in chat `chat_id`."""
    return {
        "id": query_id,
        "from": presser,
        "message": message,
        "chat_instance": str(abs(chat_id) * 7919 + 13),  # one per chat, stable
        "data": data,
    }


def bot_member(bot_id: int, username: str) -> dict[str, object]:
    """The bot as a ChatMember's `user`."""
    return {"id": bot_id, "is_bot": True, "first_name": "Stellaclaw", "username": username}


def member_update(
    chat: dict[str, object], by: dict[str, object], bot: dict[str, object], status: str
) -> dict[str, object]:
    """ChatMemberUpdated for the bot: from member to `left` or `kicked` (banned for good)."""
    new: dict[str, object] = {"status": status, "user": bot}
    if status == "kicked":
        new["until_date"] = 0  # forever
    return {
        "chat": chat,
        "from": by,
        "date": now(),
        "old_chat_member": {"status": "member", "user": bot},
        "new_chat_member": new,
    }
