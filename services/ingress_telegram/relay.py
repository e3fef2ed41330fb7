"""The update handlers: each accepted Telegram update goes to SC_IN once, before its offset
passes.

aiogram (with `handle_as_tasks=False`) confirms an update to Telegram only after its handler
returned, and moves on even if it raised; so a handler retries until JetStream acked the publish
and the mark is recorded, and raises nothing but cancellation. A message is checked in this
order: published before (the mark), for this bot at all (groups), from someone served
(sc_auth; a stranger yields only an `AccessRequested` fact), then its file is fetched into
`sc_files` and the message published, and the ack reaction set.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TypeVar

import msgspec
import nats.errors
from aiogram import Bot
from aiogram.types import (
    CallbackQuery,
    ChatMemberUpdated,
    Message,
    ReactionTypeCustomEmoji,
    ReactionTypeEmoji,
    ReactionTypePaid,
    Update,
)
from aiogram.types import User as TelegramUser
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue
from nats.js.object_store import ObjectStore

from services.ingress_telegram import files, groups, replay, updates
from services.ingress_telegram.access import AccessView
from shared import bus, subjects
from shared import logging as service_logging
from shared.config import TelegramConfig
from shared.errors import TransientError
from shared.ids import new_id
from shared.messages.contract import Chat
from shared.messages.inbound import AccessRequested, ChatRemoved, InboundMessage, MessageReceived

T = TypeVar("T")
RETRY_MAX_S = 30.0
ADMIN_AUTHORIZE = "/admin_authorize"
LEFT = ("left", "kicked")
log = logging.getLogger(__name__)


class Bus:
    """Where the relay writes: the connection, the published marks and the files."""

    def __init__(self, conn: bus.Connection, marks: KeyValue, store: ObjectStore) -> None:
        self.conn = conn
        self.marks = marks
        self.store = store


class Relay:
    """One bot's path from Telegram updates to SC_IN, with its published mark."""

    def __init__(
        self, out: Bus, bot: Bot, me: TelegramUser, view: AccessView, telegram: TelegramConfig
    ) -> None:
        self.out = out
        self.bot = bot
        self.me = me
        self.view = view
        self.reaction = telegram.ack_reaction
        self.groups = groups.Groups(bot, me, telegram.group_trigger)
        self.mark: replay.PublishedMark | None = None
        self.reactions: set[asyncio.Task[None]] = set()

    async def load_mark(self) -> None:
        """Resume from the mark recorded in KV, if any."""
        try:
            entry = await self.out.marks.get(str(self.me.id))
        except KeyNotFoundError:
            return
        if entry.value:  # an unreadable mark is reported; the dedupe window still guards
            where = f"{subjects.INGRESS_BUCKET}/{self.me.id}"
            self.mark = await bus.decoded(
                self.out.conn, replay.MARK, entry.value, where, entry.revision or 0
            )

    async def on_message(self, message: Message, event_update: Update) -> None:
        """aiogram's message handler: returns once the message is stored, or skipped."""
        await self.take(message, event_update.update_id, is_edit=False)

    async def on_edited_message(self, edited_message: Message, event_update: Update) -> None:
        """An edit becomes an `[Edited Message]` follow-up with the new text (SPEC §12.3)."""
        await self.take(edited_message, event_update.update_id, is_edit=True)

    async def on_callback(self, callback_query: CallbackQuery, event_update: Update) -> None:
        """A button pressed: answered at once, and its data taken as the user's text."""
        update_id = event_update.update_id
        try:
            await self.bot.answer_callback_query(callback_query.id)
        except Exception as exc:  # noqa: BLE001 -- a late answer only leaves a spinner
            log.info("answerCallbackQuery for update %d failed: %s", update_id, exc)
        now = datetime.now(UTC)
        message, data = callback_query.message, callback_query.data
        if message is None or not data or replay.is_replay(self.mark, update_id, now):
            return
        chat = updates.chat_of(message)
        if self.view.verdict(chat, callback_query.from_user.id) != "serve":
            log.info("dropped a button press of user %d", callback_query.from_user.id)
            return
        pressed = MessageReceived(
            chat=chat,
            sender=updates.sender_of(callback_query.from_user),
            text=data,
            received_at=now,
            bot_name=self.me.first_name,
        )
        await self.publish(update_id, pressed)

    async def on_my_chat_member(
        self, my_chat_member: ChatMemberUpdated, event_update: Update
    ) -> None:
        """The bot removed from a group ends its conversation (SPEC §12.3)."""
        chat = my_chat_member.chat
        if chat.type == "private" or my_chat_member.new_chat_member.status not in LEFT:
            return
        removed = ChatRemoved(chat=updates.chat_in(chat), received_at=my_chat_member.date)
        log.warning("the bot was removed from chat %d", chat.id)
        await self.publish(event_update.update_id, removed)

    async def take(self, message: Message, update_id: int, *, is_edit: bool) -> None:
        if replay.is_replay(self.mark, update_id, updates.sent_at(message, is_edit=is_edit)):
            log.info("skipped update %d: published before", update_id)
            return
        user = message.from_user
        if user is None or user.is_bot:
            return
        chat = updates.chat_of(message)
        text = updates.text_of(message) or ""
        if chat.kind != "private":
            if not await self.groups.is_for_me(message, text):
                log.info("skipped update %d: not for the bot", update_id)
                return
            text = groups.without_mention(text, self.me.username or "")
        match self.view.verdict(chat, user.id):
            case "ignore":
                log.info("dropped update %d: chat %d is not served", update_id, chat.chat_id)
                return
            case "refuse":
                await self.refuse(message, update_id, text)
                return
        received = await self.received(message, update_id, text, is_edit=is_edit)
        if received is None:
            log.info("skipped update %d: nothing to take in", update_id)
            return
        await self.publish(update_id, received)
        if not is_edit and self.reaction:
            self.react(chat, message.message_id)

    async def refuse(self, message: Message, update_id: int, text: str) -> None:
        """A stranger: nothing of the message is kept, only that they asked (SPEC §12.2)."""
        assert message.from_user is not None
        chat = updates.chat_of(message)
        wants_admin = (
            chat.kind == "private"
            and text.strip().split("@")[0] == ADMIN_AUTHORIZE
            and not self.view.has_admin()
        )
        asked = AccessRequested(
            chat=chat,
            sender=updates.sender_of(message.from_user),
            chat_title=message.chat.title or "",
            wants_admin=wants_admin,
            received_at=updates.sent_at(message, is_edit=False),
        )
        log.info(
            "update %d from user %d in chat %d: not served; access requested",
            update_id,
            message.from_user.id,
            message.chat.id,
        )
        await self.publish(update_id, asked)

    async def received(
        self, message: Message, update_id: int, text: str, *, is_edit: bool
    ) -> MessageReceived | None:
        """The message with its file fetched into sc_files (a file too large: a notice)."""
        received = updates.message_received(message, text, is_edit=is_edit)
        if received is None:
            if updates.is_unreadable(message) and message.chat.type == "private":
                assert message.from_user is not None
                return MessageReceived(
                    chat=updates.chat_of(message),
                    sender=updates.sender_of(message.from_user),
                    text="",
                    received_at=updates.sent_at(message, is_edit=is_edit),
                    notices=[updates.CANNOT_READ],
                )
            return None
        notices: list[str] = []
        attachments = []
        if not is_edit and updates.has_file(message):
            conv = received.chat.conversation_id
            attachment = await until_done(
                "fetch the file",
                lambda: files.fetch(self.bot, self.out.store, conv, update_id, message),
            )
            if attachment is not None:
                attachments.append(attachment)
                if files.is_too_big(attachment):
                    notices.append(files.too_big_notice(attachment))
        return msgspec.structs.replace(
            received, attachments=attachments, notices=notices, bot_name=self.me.first_name
        )

    def react(self, chat: Chat, message_id: int) -> None:
        """The ack reaction (SPEC §12.5), set without holding the next update."""
        assert chat.chat_id is not None
        reaction: list[ReactionTypeEmoji | ReactionTypeCustomEmoji | ReactionTypePaid] = [
            ReactionTypeEmoji(emoji=self.reaction)
        ]
        call = self.bot.set_message_reaction(chat.chat_id, message_id, reaction=reaction)

        async def set_it() -> None:
            try:
                await call
            except Exception as exc:  # noqa: BLE001 -- reactions off in that chat, …
                log.info("the ack reaction in chat %d failed: %s", chat.chat_id, exc)

        task = asyncio.create_task(set_it())
        self.reactions.add(task)
        task.add_done_callback(self.reactions.discard)

    async def publish(self, update_id: int, received: InboundMessage) -> None:
        conv = received.chat.conversation_id
        service_logging.conv_var.set(conv)
        service_logging.trace_var.set(new_id())
        msg_id = subjects.telegram_update_msg_id(self.me.id, update_id)
        ack = await until_done(
            "publish",
            lambda: bus.publish(
                self.out.conn, subjects.inbound("telegram", conv), received, msg_id=msg_id
            ),
        )
        mark = replay.PublishedMark(update_id=update_id, sent_at=received.received_at)
        await until_done(
            "record the mark",
            lambda: self.out.marks.put(str(self.me.id), replay.encode(mark)),
        )
        self.mark = mark
        log.info(
            "published update %d",
            update_id,
            extra={"in_seq": ack.seq, "duplicate": bool(ack.duplicate)},
        )


async def until_done(what: str, step: Callable[[], Awaitable[T]]) -> T:
    """Run `step` until the bus takes it: 1 s between tries, doubling, at most RETRY_MAX_S."""
    delay_s = 1.0
    while True:
        try:
            return await step()
        except (TransientError, nats.errors.Error, TimeoutError) as exc:
            log.warning("%s failed, retrying in %.0f s: %s", what, delay_s, exc)
        await asyncio.sleep(delay_s)
        delay_s = min(delay_s * 2, RETRY_MAX_S)
