"""The update handler: each accepted Telegram message goes to SC_IN once, before its offset passes.

aiogram (with `handle_as_tasks=False`) confirms an update to Telegram only after this handler
returned, and moves on even if it raised; so the handler retries until JetStream acked the publish
and the mark is recorded, and raises nothing but cancellation.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection
from typing import TypeVar

import nats.errors
from aiogram.types import Message, Update
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from services.ingress_telegram import replay, updates
from shared import bus, subjects
from shared import logging as service_logging
from shared.errors import TransientError
from shared.ids import new_id
from shared.messages.inbound import MessageReceived

T = TypeVar("T")
RETRY_MAX_S = 30.0
log = logging.getLogger(__name__)


class Relay:
    """One bot's path from Telegram updates to SC_IN, with its published mark."""

    def __init__(
        self,
        conn: bus.Connection,
        kv: KeyValue,
        bot_id: int,
        allowed_user_ids: Collection[int],
        mark: replay.PublishedMark | None,
    ) -> None:
        self.conn = conn
        self.kv = kv
        self.bot_id = bot_id
        self.allowed_user_ids = frozenset(allowed_user_ids)
        self.mark = mark

    @classmethod
    async def load(
        cls, conn: bus.Connection, kv: KeyValue, bot_id: int, allowed_user_ids: Collection[int]
    ) -> "Relay":
        """A relay that resumes from the mark recorded in KV, if any."""
        try:
            entry = await kv.get(str(bot_id))
        except KeyNotFoundError:
            return cls(conn, kv, bot_id, allowed_user_ids, None)
        mark = None
        if entry.value:  # an unreadable mark is reported; the dedupe window still guards
            where = f"{subjects.INGRESS_BUCKET}/{bot_id}"
            mark = await bus.decoded(conn, replay.MARK, entry.value, where, entry.revision or 0)
        return cls(conn, kv, bot_id, allowed_user_ids, mark)

    async def on_message(self, message: Message, event_update: Update) -> None:
        """aiogram's message handler: returns once the message is stored, or skipped."""
        await self.take(message, event_update.update_id, is_edit=False)

    async def on_edited_message(self, edited_message: Message, event_update: Update) -> None:
        """An edit becomes an `[Edited Message]` follow-up with the new text (SPEC §12.3)."""
        await self.take(edited_message, event_update.update_id, is_edit=True)

    async def take(self, message: Message, update_id: int, *, is_edit: bool) -> None:
        if replay.is_replay(self.mark, update_id, updates.sent_at(message, is_edit=is_edit)):
            log.info("skipped update %d: published before", update_id)
            return
        if not updates.is_allowed(message, self.allowed_user_ids):
            user_id = message.from_user.id if message.from_user else None
            log.info(
                "dropped update %d from user %s in chat %d: not an allowed user",
                update_id,
                user_id,
                message.chat.id,
            )
            return
        received = updates.message_received(message, is_edit=is_edit)
        if received is None:
            log.info("skipped update %d: nothing to take in", update_id)
            return
        await self.publish(update_id, received)

    async def publish(self, update_id: int, received: MessageReceived) -> None:
        conv = received.chat.conversation_id
        service_logging.conv_var.set(conv)
        service_logging.trace_var.set(new_id())
        msg_id = subjects.telegram_update_msg_id(self.bot_id, update_id)
        ack = await until_done(
            "publish",
            lambda: bus.publish(
                self.conn, subjects.inbound("telegram", conv), received, msg_id=msg_id
            ),
        )
        mark = replay.PublishedMark(update_id=update_id, sent_at=received.received_at)
        await until_done(
            "record the mark", lambda: self.kv.put(str(self.bot_id), replay.encode(mark))
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
