"""Authorization (SPEC §12.2): the one refusal per chat, the admins' notifications, admin
commands, and the records of KV `sc_auth` (written here alone, watched by ingress).

Every change is a compare-and-set, so a redelivered input finds its change made and sends
nothing twice: the refusal and the notifications go out only from the input that created the
`pending` record.
"""

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeVar

import msgspec
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from shared import access, bus, subjects
from shared.access import ADMINS, CHAT_ACCESS, AccessState, Admins, ChatAccess
from shared.config import TelegramConfig
from shared.errors import TransientError
from shared.ids import ConversationId
from shared.messages.contract import Chat, Sender
from shared.messages.inbound import AccessRequested
from shared.messages.outbound import Button

MAX_ATTEMPTS = 8
ADMIN_ONLY = "Admin commands work only in a private chat with an admin."
ADMIN_COMMANDS = ("admin_authorize", "admin_chat_list", "admin_chat_approve", "admin_chat_reject")
APPROVED_NOTICE = "✅ An admin approved this chat. Send a message to start."
T = TypeVar("T", bound=msgspec.Struct)
log = logging.getLogger(__name__)


class Note(msgspec.Struct, frozen=True, kw_only=True):
    """A message to one chat (not necessarily the one that wrote)."""

    chat: Chat
    text: str
    buttons: list[list[Button]] = msgspec.field(default_factory=list)


def private_chat(user_id: int) -> Chat:
    """A Telegram user's private chat with the bot (where admins are notified)."""
    conv = ConversationId(f"tg_{user_id}")
    return Chat(conversation_id=conv, channel="telegram", kind="private", chat_id=user_id)


def refusal(request: AccessRequested) -> str:
    if request.chat.kind == "private":
        return (
            "Sorry, this is a private assistant. Your Telegram user id is "
            f"{request.sender.user_id}; ask the owner to allow it."
        )
    conv = access.chat_conversation(request.chat)
    return (
        f"This group is not approved yet. An admin can approve it with /admin_chat_approve {conv}."
    )


def notification(request: AccessRequested) -> tuple[str, list[list[Button]]]:
    """`🔔 Ada (@ada, id 42) wants to use the bot in a private chat.` and its two buttons."""
    who = request.sender
    handle = f"@{who.username}, " if who.username else ""
    where = "a private chat" if request.chat.kind == "private" else f'group "{request.chat_title}"'
    conv = access.chat_conversation(request.chat)
    text = f"🔔 {who.display_name} ({handle}id {who.user_id}) wants to use the bot in {where}."
    buttons = [
        [
            Button(text="Approve", data=f"/admin_chat_approve {conv}"),
            Button(text="Reject", data=f"/admin_chat_reject {conv}"),
        ]
    ]
    return text, buttons


class Gate:
    """The conversation service's view of `sc_auth`."""

    def __init__(self, conn: bus.Connection, kv: KeyValue, telegram: TelegramConfig | None):
        self.conn = conn
        self.kv = kv
        self.configured = frozenset(telegram.admin_user_ids if telegram else ())

    async def admins(self) -> frozenset[int]:
        """`telegram.admin_user_ids` and the admins `/admin_authorize` recorded."""
        recorded, _ = await self._read(subjects.AUTH_ADMINS_KEY, ADMINS)
        return self.configured | frozenset(recorded.user_ids if recorded else ())

    async def requested(self, request: AccessRequested) -> list[Note]:
        """A stranger wrote: the chat becomes `pending` and gets its one refusal, and every
        admin is asked; a chat known before gets nothing. `/admin_authorize` while no admin
        exists makes the sender the admin instead."""
        if request.wants_admin and request.chat.kind == "private":
            claimed = await self.claim(request.sender)
            if claimed is not None:
                return [Note(chat=request.chat, text=claimed)]
        now = datetime.now(UTC)
        record = ChatAccess(
            chat=request.chat,
            title=request.chat_title or request.sender.display_name,
            access="pending",
            since=now,
            requested_by=request.sender.user_id,
        )
        key = subjects.auth_chat_key(access.chat_conversation(request.chat))
        try:
            await self.kv.create(key, msgspec.json.encode(record))
        except KeyWrongLastSequenceError:
            log.info("access asked again in a known chat; nothing sent")
            return []
        log.warning("refused a stranger", extra={"user_id": request.sender.user_id, "chat": key})
        text, buttons = notification(request)
        notes = [Note(chat=request.chat, text=refusal(request))]
        for admin in sorted(await self.admins()):
            notes.append(Note(chat=private_chat(admin), text=text, buttons=buttons))
        return notes

    async def claim(self, sender: Sender) -> str | None:
        """`/admin_authorize`: the sender becomes the admin when none exists; None otherwise."""
        if self.configured or sender.user_id is None:
            return None
        recorded, revision = await self._read(subjects.AUTH_ADMINS_KEY, ADMINS)
        if recorded is not None and recorded.user_ids:
            return None
        value = msgspec.json.encode(Admins(user_ids=[sender.user_id]))
        try:
            if revision:
                await self.kv.update(subjects.AUTH_ADMINS_KEY, value, last=revision)
            else:
                await self.kv.create(subjects.AUTH_ADMINS_KEY, value)
        except KeyWrongLastSequenceError:
            return None  # someone else was first
        log.warning("user %d is now the admin (/admin_authorize)", sender.user_id)
        return f"✅ You are now the admin of this bot (user id {sender.user_id})."

    async def decide(self, conv: str, state: AccessState) -> ChatAccess | None:
        """Approve or reject a known chat; None when no chat `conv` is known."""

        def change(record: ChatAccess) -> ChatAccess:
            if record.access == state:
                return record
            return msgspec.structs.replace(record, access=state, since=datetime.now(UTC))

        return await self._change(subjects.auth_chat_key(conv), CHAT_ACCESS, change)

    async def chats(self) -> list[tuple[str, ChatAccess]]:
        """Every chat that asked, by conversation id."""
        keys = await bus.keys(self.kv, subjects.auth_chat_key("*"))
        found = []
        for key in sorted(keys):
            record, _ = await self._read(key, CHAT_ACCESS)
            if record is not None:
                found.append((key.removeprefix(subjects.auth_chat_key("")), record))
        return found

    async def _read(self, key: str, decoder: msgspec.json.Decoder[T]) -> tuple[T | None, int]:
        try:
            entry = await self.kv.get(key)
        except KeyNotFoundError:
            return None, 0
        if entry.value is None:
            return None, entry.revision or 0
        where = f"{subjects.AUTH_BUCKET}/{key}"
        found = await bus.decoded(self.conn, decoder, entry.value, where, entry.revision or 0)
        return found, entry.revision or 0

    async def _change(
        self, key: str, decoder: msgspec.json.Decoder[T], change: Callable[[T], T]
    ) -> T | None:
        for _ in range(MAX_ATTEMPTS):
            record, revision = await self._read(key, decoder)
            if record is None:
                return None
            updated = change(record)
            if updated == record:
                return record
            try:
                await self.kv.update(key, msgspec.json.encode(updated), last=revision)
            except KeyWrongLastSequenceError:
                continue
            return updated
        raise TransientError(f"{subjects.AUTH_BUCKET}/{key} kept changing")
