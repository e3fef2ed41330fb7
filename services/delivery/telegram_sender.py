"""Telegram's sender: each output on `sc.out.telegram.<conv>` becomes Bot API calls (SPEC §12.9).

A reply is rendered, split and sent part by part; the `sc_delivery` record is stored after every
part, and the handler returns (so the output is acked) only once the record says it is complete.
A file is uploaded (file_sender decides how), recorded, then the rest of a long caption follows
the same way; a file that cannot go becomes a notice in the chat. Only the answer ends typing.
A reaction is one setMessageReaction, recorded the same way; Telegram refusing it is only logged:
a missing 👀 is not worth a message to the user.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Final, TypeVar, assert_never

from msgspec import structs
from nats.js.kv import KeyValue

from services.delivery import file_sender, records, render
from services.delivery.bot_api import (
    NO_PREVIEW,
    EntityError,
    FloodWaitError,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    ReactionTypeEmoji,
    RejectedError,
    ReplyParameters,
    SendChatAction,
    SendMessage,
    SendUpload,
    SetMessageReaction,
    TelegramApi,
)
from services.delivery.panels import Panels
from services.delivery.records import DeliveryRecord
from services.delivery.typing_indicator import TypingIndicators
from shared import files, subjects
from shared.bus import Connection, Envelope
from shared.errors import InputError, TransientError
from shared.messages.contract import Chat
from shared.messages.outbound import (
    Button,
    Output,
    SendFile,
    SendReply,
    SetReaction,
    ShowProgress,
    ShowTyping,
    StreamText,
)

MAX_FLOOD_WAITS: Final = 3  # 429s waited out in-process per part; the next one naks the output
MAX_INLINE_WAIT_S: Final = 60.0  # a longer retry_after naks the output with that delay
# Refusals that mean the chat cannot get anything (SPEC §12.9): its outputs are dropped for a
# while, counted; a group's conversation ends by the `my_chat_member` update ingress receives.
GONE_REASONS: Final = ("bot was blocked by the user", "chat not found", "bot was kicked")
GONE_S: Final = 300.0
log = logging.getLogger(__name__)
T = TypeVar("T")


def failure_notice(reason: str) -> str:
    return f"⚠️ I could not deliver the answer ({reason})."


class TelegramSender:
    """Sends one chat's outputs in order; handles one output at a time."""

    def __init__(
        self,
        conn: Connection,
        kv: KeyValue,
        api: TelegramApi,
        typing: TypingIndicators,
        panels: Panels,
    ) -> None:
        self.panels = panels
        self._stop = asyncio.Event()  # set by `stopping()`: cuts a flood wait short
        self._conn = conn
        self._kv = kv
        self._api = api
        self._typing = typing
        self._gone: dict[str, float] = {}  # conversation: when its chat refused the bot

    def stopping(self) -> None:
        self._stop.set()

    def _is_gone(self, chat: Chat) -> bool:
        """Did the chat refuse the bot (blocked, gone, kicked) less than GONE_S ago?"""
        since = self._gone.get(chat.conversation_id)
        if since is None:
            return False
        if asyncio.get_running_loop().time() - since < GONE_S:
            return True
        del self._gone[chat.conversation_id]
        return False

    async def handle(self, message: Output, envelope: Envelope) -> None:
        if self._is_gone(message.chat):
            self._conn.counters["delivery_dropped"] += 1
            log.info("output %s dropped: its chat cannot be reached", message.out_id)
            return
        match message:
            case ShowTyping():
                chat_id = _chat_id(message.chat)
                request = SendChatAction(
                    chat_id=chat_id, action="typing", message_thread_id=message.chat.thread_id
                )
                self._typing.start(message.turn_id, request)
            case SendReply():
                if message.turn_id:
                    self._typing.end(message.turn_id)
                    self.panels.answered(message.turn_id)
                await self._reply(message, envelope)
            case SetReaction():
                await self._react(message, envelope)
            case SendFile():  # in the middle of a turn: its typing goes on
                await self._send_file(message, envelope)
            case ShowProgress():
                if message.ending:  # however the turn ended, its typing stops
                    self._typing.end(message.turn_id)
                self.panels.offer(message)
            case StreamText():
                self.panels.stream(message)
            case unhandled:
                assert_never(unhandled)

    async def _reply(self, reply: SendReply, envelope: Envelope) -> None:
        key = subjects.delivery_key(reply.chat.conversation_id, reply.out_id)
        record = await records.load(self._conn, self._kv, key)
        if record.is_complete:
            log.info("output %s was delivered before; not sent again", reply.out_id)
            return
        if envelope.num_delivered > 1 or record.is_attempted:  # DESIGN §1's window, logged
            log.warning(
                "output %s of %s delivered again (try %d) after %d recorded part(s); a part "
                "sent just before a crash may be sent twice",
                reply.out_id,
                reply.chat.conversation_id,
                envelope.num_delivered,
                len(record.message_ids),
            )
        if not record.is_attempted:
            record = structs.replace(record, is_attempted=True)
            await records.store(self._kv, key, record)
        text = await self._text(reply)
        plan = render.answer_plan(text)  # past 12 parts: 11, then the whole as a document
        steps = len(plan.parts) + int(plan.document)
        for index in range(len(record.message_ids), steps):
            try:
                if index < len(plan.parts):
                    request = self._part_request(reply, plan.parts, index)
                    message_id = await self._send_part(request, envelope)
                else:
                    message_id = await self._send_upload(_document(reply, text), envelope)
            except RejectedError as exc:
                record = await self._give_up(reply, record, exc, envelope)
                break
            is_last = index == steps - 1
            ids = (*record.message_ids, message_id)
            record = structs.replace(record, message_ids=ids, is_complete=is_last)
            await records.store(self._kv, key, record)
            if not is_last:
                await envelope.in_progress()
        if not record.is_complete:  # refused part way, or nothing to send
            await records.store(self._kv, key, structs.replace(record, is_complete=True))
        log.info("output %s delivered in %d message(s)", reply.out_id, len(record.message_ids))

    def _part_request(
        self, reply: SendReply, parts: tuple[render.Part, ...], index: int
    ) -> SendMessage:
        """One part; the first answers the message it replies to, the last carries the buttons."""
        reply_to = reply.reply_to_message_id if index == 0 else None
        request = _request(reply.chat, parts[index], reply_to)
        if index == len(parts) - 1 and reply.buttons:
            request = structs.replace(request, reply_markup=_keyboard(reply.buttons))
        return request

    async def _send_file(self, output: SendFile, envelope: Envelope) -> None:
        key = subjects.delivery_key(output.chat.conversation_id, output.out_id)
        record = await records.load(self._conn, self._kv, key)
        if record.is_complete:
            log.info("file %s was sent before; not sent again", output.out_id)
            return
        items = file_sender.files_of(output)
        parts = [file_sender.caption_parts(item.caption) for item in items]
        rest = [part for _, more in parts for part in more]  # after all the files
        if len(record.message_ids) < len(items):  # not every file is sent yet
            captions = [first for first, _ in parts]
            uploads = self._upload_files(key, items, captions, record, envelope)
            record = await file_sender.heartbeating(uploads, envelope)
            record = structs.replace(record, is_complete=record.is_complete or not rest)
            await records.store(self._kv, key, record)
        if record.is_complete:
            return
        for part in rest[len(record.message_ids) - len(items) :]:
            try:
                message_id = await self._send_part(_request(output.chat, part, None), envelope)
            except RejectedError as exc:
                log.warning("the rest of the caption of %s refused: %s", output.out_id, exc)
                break
            record = DeliveryRecord(message_ids=(*record.message_ids, message_id))
            await records.store(self._kv, key, record)
            await envelope.in_progress()
        await records.store(self._kv, key, structs.replace(record, is_complete=True))

    async def _upload_files(
        self,
        key: str,
        items: list[SendFile],
        captions: list[render.Part],
        record: DeliveryRecord,
        envelope: Envelope,
    ) -> DeliveryRecord:
        """Send the files `record` does not hold yet: two or more as one album if they can go as
        one, else one by one, each as one message (the file, or its notice), recorded after
        each but the last (the caller records that). A lone file that cannot go, or a notice
        Telegram refuses, completes the output; in an album's files one by one, the rest of a
        failed file's caption still follows: the record cannot tell which file failed."""
        if not record.message_ids and len(items) > 1:
            chat_id = _chat_id(items[0].chat)
            request = await file_sender.album(self._conn, items, captions, chat_id)
            if request is not None and (
                album := await file_sender.send_album(
                    request, lambda r: self._call(partial(self._api.send_media_group, r), envelope)
                )
            ):
                return DeliveryRecord(message_ids=album)
        for index in range(len(record.message_ids), len(items)):
            uploaded = await self._upload(items[index], captions[index], envelope)
            is_complete = not uploaded.message_ids or (uploaded.is_complete and len(items) == 1)
            message_ids = (*record.message_ids, *uploaded.message_ids)
            record = DeliveryRecord(message_ids=message_ids, is_complete=is_complete)
            if is_complete or index == len(items) - 1:
                break
            await records.store(self._kv, key, record)
        return record

    async def _upload(
        self, output: SendFile, caption: render.Part, envelope: Envelope
    ) -> DeliveryRecord:
        """Upload the file: its message id, or the notice's when it cannot go (then complete)."""
        data = None
        if output.file.size <= file_sender.MAX_FILE_BYTES:
            data = await files.read_bytes(self._conn, output.file.object_name)
        if data is None or len(data) > file_sender.MAX_FILE_BYTES:
            notice = file_sender.unsendable_notice(output, data)
            return await self._file_failed(output, notice, envelope)
        request = file_sender.upload(output, _chat_id(output.chat), data, caption)
        try:
            message_id = await self._send_upload(request, envelope)
        except RejectedError as exc:
            notice = file_sender.file_failure_notice(output, exc.description)
            return await self._file_failed(output, notice, envelope)
        log.info("file %s sent with %s", output.out_id, request.method)
        return DeliveryRecord(message_ids=(message_id,))

    async def _send_upload(self, request: SendUpload, envelope: Envelope) -> int:
        try:
            return await self._call(partial(self._api.send_upload, request), envelope)
        except EntityError as exc:
            log.warning("caption entities refused, sending it as plain text: %s", exc.description)
            plain = structs.replace(request, caption_entities=())
            return await self._call(partial(self._api.send_upload, plain), envelope)

    async def _file_failed(
        self, output: SendFile, notice: str, envelope: Envelope
    ) -> DeliveryRecord:
        """Count the failure and tell the user; the output is then complete."""
        self._conn.counters["delivery_failed"] += 1
        log.warning("file %s not sent: %s", output.out_id, notice)
        message_id = await self._notify(output.chat, notice, envelope)
        return DeliveryRecord(
            message_ids=() if message_id is None else (message_id,), is_complete=True
        )

    async def _react(self, reaction: SetReaction, envelope: Envelope) -> None:
        key = subjects.delivery_key(reaction.chat.conversation_id, reaction.out_id)
        if (await records.load(self._conn, self._kv, key)).is_complete:
            log.info("reaction %s was set before; not set again", reaction.out_id)
            return
        request = SetMessageReaction(
            chat_id=_chat_id(reaction.chat),
            message_id=reaction.message_id,
            reaction=(ReactionTypeEmoji(emoji=reaction.emoji),),
        )
        try:
            await self._call(partial(self._api.set_message_reaction, request), envelope)
        except RejectedError as exc:  # reactions off in that chat, the message gone, ...
            log.info("reaction %s refused by telegram, left out: %s", reaction.out_id, exc)
        await records.store(self._kv, key, DeliveryRecord(is_complete=True))

    async def _text(self, reply: SendReply) -> str:
        """The answer's Markdown, from `sc_files` when it was too long for the bus."""
        if reply.text_file is None:
            return reply.text
        text = await files.read_text(self._conn, reply.text_file)
        return failure_notice("its text is no longer stored") if text is None else text

    async def _send_part(self, request: SendMessage, envelope: Envelope) -> int:
        try:
            return await self._send(request, envelope)
        except EntityError as exc:
            log.warning("entities refused, sending the part as plain text: %s", exc.description)
            return await self._send(structs.replace(request, entities=()), envelope)

    async def _send(self, request: SendMessage, envelope: Envelope) -> int:
        return await self._call(partial(self._api.send_message, request), envelope)

    async def _call(self, call: Callable[[], Awaitable[T]], envelope: Envelope) -> T:
        """One Bot API call, waiting out up to MAX_FLOOD_WAITS short 429s in between."""
        for _ in range(MAX_FLOOD_WAITS):
            try:
                return await call()
            except FloodWaitError as exc:
                if exc.retry_after_s > MAX_INLINE_WAIT_S:
                    raise
                log.warning("telegram flood control: waiting %.1f s", exc.retry_after_s)
                await envelope.in_progress()
                await self._pause(exc.retry_after_s)
        return await call()

    async def _pause(self, delay_s: float) -> None:
        """Wait `delay_s`; a stop cuts it short and the output is retried by the next process."""
        try:
            async with asyncio.timeout(delay_s):
                await self._stop.wait()
        except TimeoutError:
            return
        raise TransientError("stopping during a flood wait", retry_after_s=delay_s)

    async def _give_up(
        self, reply: SendReply, record: DeliveryRecord, exc: RejectedError, envelope: Envelope
    ) -> DeliveryRecord:
        """Count the failure and tell the user in plain text; the output is then complete. A chat
        that blocked the bot, is gone, or removed it is left alone for GONE_S (SPEC §12.9)."""
        if any(reason in exc.description.lower() for reason in GONE_REASONS):
            self._gone[reply.chat.conversation_id] = asyncio.get_running_loop().time()
            self._conn.counters["delivery_dropped"] += 1
            log.warning("chat %s cannot be reached: %s", reply.chat.conversation_id, exc)
            return record
        self._conn.counters["delivery_failed"] += 1
        log.warning("output %s refused by telegram: %s", reply.out_id, exc)
        message_id = await self._notify(reply.chat, failure_notice(exc.description), envelope)
        if message_id is None:
            return record
        return DeliveryRecord(message_ids=(*record.message_ids, message_id))

    async def _notify(self, chat: Chat, notice: str, envelope: Envelope) -> int | None:
        """Send a failure notice as plain text; None when Telegram refuses it too."""
        try:
            return await self._send(_request(chat, render.Part(text=notice), None), envelope)
        except RejectedError as again:
            log.warning("a failure notice to %s was refused too: %s", chat.conversation_id, again)
            return None


def _chat_id(chat: Chat) -> int:
    if chat.chat_id is None:
        raise InputError(f"telegram output for {chat.conversation_id!r} has no chat_id")
    return chat.chat_id


def _document(reply: SendReply, text: str) -> SendUpload:
    """The whole of an answer too long for 12 messages, as `answer-<turn>.md` (SPEC §12.7)."""
    return SendUpload(
        method="sendDocument",
        chat_id=_chat_id(reply.chat),
        file_name=render.document_name(reply.turn_id or reply.out_id),
        media_type="text/markdown",
        data=text.encode(),
        caption=render.document_caption(text),
        message_thread_id=reply.chat.thread_id,
    )


def _keyboard(rows: list[list[Button]]) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=tuple(
            tuple(InlineKeyboardButton(text=b.text, callback_data=b.data) for b in row)
            for row in rows
        )
    )


def _request(chat: Chat, part: render.Part, reply_to: int | None) -> SendMessage:
    return SendMessage(
        chat_id=_chat_id(chat),
        text=part.text,
        entities=part.entities,
        message_thread_id=chat.thread_id,
        link_preview_options=NO_PREVIEW,
        reply_parameters=ReplyParameters(message_id=reply_to) if reply_to else None,
    )
