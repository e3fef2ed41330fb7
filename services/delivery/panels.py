"""Progress panels (SPEC §12.6) and streamed drafts (§12.7), one driver task per turn.

A turn's `ShowProgress` snapshots replace each other in memory (they are acked as soon as they
are read: only the newest matters, and the next one follows within a second). The driver sends
the panel once it is due (the first tool batch, or 3 s into the turn), then edits it as the
chat's pacer allows (≥ 1 s apart in private chats, ≥ 4 s in groups, the elapsed time refreshed
every 30 s), and leaves it in the end state. The panel's message id is kept in KV `sc_panel`, so a
restarted delivery edits the same panel when the turn goes on.

`StreamText` in a private chat becomes `sendMessageDraft` (`telegram.stream = "draft"`, one draft
id per turn, ≥ 1 s apart), or the panel's 💬 line (`"edit"`); a Bot API that answers the method
with "Not Found" switches this process to `"edit"` once, logged.
"""

import asyncio
import contextlib
import logging
import zlib
from datetime import UTC, datetime

import msgspec
import nats.errors
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from services.delivery import panel as panel_text
from services.delivery.bot_api import (
    NO_PREVIEW,
    DeleteMessage,
    EditMessageText,
    FloodWaitError,
    RejectedError,
    SendMessage,
    SendMessageDraft,
    TelegramApi,
)
from services.delivery.pacing import PanelPacer
from shared.config import TelegramConfig
from shared.errors import TransientError
from shared.messages.contract import Chat
from shared.messages.outbound import ShowProgress, StreamText

DRAFT_GAP_S = 1.0
IDLE_END_S = 600.0  # a turn whose end never comes stops being driven
NOT_MODIFIED = "message is not modified"
EDIT_GONE = "message to edit not found"
log = logging.getLogger(__name__)


class PanelRecord(msgspec.Struct, frozen=True, kw_only=True):
    """KV `sc_panel/<conv>`: the turn whose panel the chat shows, and its message."""

    turn_id: str
    message_id: int


RECORD: msgspec.json.Decoder[PanelRecord] = msgspec.json.Decoder(PanelRecord)


class Turn:
    """One turn's panel and draft state."""

    def __init__(self, progress: ShowProgress) -> None:
        self.chat: Chat = progress.chat
        self.latest = progress
        self.ended_at: datetime | None = None  # when the ending arrived: its elapsed time
        self.message_id: int | None = None
        self.stream_line = ""  # `"edit"` streaming: the answer so far
        self.changed = asyncio.Event()


class Panels:
    """Every chat's panels and drafts in this process."""

    def __init__(
        self, api: TelegramApi, kv: KeyValue, telegram: TelegramConfig, tasks: asyncio.TaskGroup
    ) -> None:
        self.api = api
        self.kv = kv
        self.stream_mode = telegram.stream
        self.on_done = telegram.panel_on_done
        self.tasks = tasks
        self.turns: dict[str, Turn] = {}  # by turn id
        self.pacers: dict[str, PanelPacer] = {}  # by conversation: pacing is per chat
        self.drafts: dict[str, StreamText] = {}  # by turn id: the newest text not sent yet
        self.drafting: dict[str, asyncio.Task[None]] = {}
        self.stopped = False

    def offer(self, progress: ShowProgress) -> None:
        """A turn's newest state; its driver starts with its first."""
        turn = self.turns.get(progress.turn_id)
        if turn is None:
            turn = self.turns[progress.turn_id] = Turn(progress)
            self.tasks.create_task(self.drive(turn))
        elif progress.seq < turn.latest.seq or turn.latest.ending:
            return  # an older snapshot, or one after the end: the panel has moved on
        turn.latest = progress
        if progress.ending and turn.ended_at is None:
            turn.ended_at = datetime.now(UTC)
        turn.changed.set()

    def stream(self, text: StreamText) -> None:
        """The answer so far: a draft, or the panel's 💬 line."""
        if self.stream_mode == "edit":
            turn = self.turns.get(text.turn_id)
            if turn is not None:
                turn.stream_line = text.text
                turn.changed.set()
            return
        if self.stream_mode != "draft":
            return
        self.drafts[text.turn_id] = text
        if text.turn_id not in self.drafting:
            self.drafting[text.turn_id] = self.tasks.create_task(self.draft(text.turn_id))

    def answered(self, turn_id: str) -> None:
        """The turn's answer goes out now: its draft stops."""
        self.drafts.pop(turn_id, None)
        drafting = self.drafting.pop(turn_id, None)
        if drafting is not None:
            drafting.cancel()

    def end_all(self) -> None:
        """The service stops: drafts end, and each panel as it stands (the next process edits
        it on when the turn goes on)."""
        self.stopped = True
        for drafting in list(self.drafting.values()):
            drafting.cancel()
        for turn in self.turns.values():
            turn.changed.set()

    # The panel.

    async def drive(self, turn: Turn) -> None:
        """Send and edit one turn's panel until it shows how the turn ended."""
        pacer = self.pacers.setdefault(
            turn.chat.conversation_id, PanelPacer.for_chat(is_group=turn.chat.kind != "private")
        )
        turn.message_id = await self.recorded(turn)
        loop = asyncio.get_running_loop()
        try:
            while not self.stopped:
                wait_s = await self.step(turn, pacer, loop.time())
                if wait_s is None:
                    return
                turn.changed.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait_s):
                        await turn.changed.wait()
        finally:
            self.turns.pop(turn.latest.turn_id, None)

    async def step(self, turn: Turn, pacer: PanelPacer, now: float) -> float | None:
        """Send what is due; how long to wait for the next change (None: the panel is done)."""
        latest, wall = turn.latest, datetime.now(UTC)
        if turn.message_id is None and not panel_text.is_due(latest, wall):
            if latest.ending:
                return None  # answered before a panel was due: none is shown
            return (latest.started_at + panel_text.DUE_AFTER - wall).total_seconds()
        if latest.ending == "done" and self.on_done == "delete":
            await self.finish(turn)
            return None
        shown_at = turn.ended_at or wall
        pacer.offer(
            panel_text.render(latest, shown_at, stream_line=turn.stream_line),
            is_final=bool(latest.ending),
        )
        due = pacer.next_due(now)
        if due is None:
            if latest.ending:
                await self.finish(turn)
                return None
            return IDLE_END_S
        if due > now:
            return due - now
        text = pacer.take(now)
        if text is not None:
            await self.put(turn, pacer, text, now)
        return 0.0

    async def put(self, turn: Turn, pacer: PanelPacer, text: str, now: float) -> None:
        """Send the panel, or edit it; Telegram's answer tells the pacer what is shown."""
        chat_id = turn.chat.chat_id
        assert chat_id is not None
        try:
            if turn.message_id is None:
                request = SendMessage(
                    chat_id=chat_id,
                    text=text,
                    link_preview_options=NO_PREVIEW,
                    message_thread_id=turn.chat.thread_id,
                )
                turn.message_id = await self.api.send_message(request)
                await self.record(turn)
            else:
                edit = EditMessageText(
                    chat_id=chat_id,
                    message_id=turn.message_id,
                    text=text,
                    link_preview_options=NO_PREVIEW,
                )
                await self.api.edit_message_text(edit)
        except FloodWaitError as exc:
            pacer.paused(exc.retry_after_s, now)
            return
        except RejectedError as exc:
            if NOT_MODIFIED in exc.description:
                pacer.sent(text, now)
            elif EDIT_GONE in exc.description:
                turn.message_id = None  # deleted in the chat: sent anew
                pacer.forget()
            else:
                log.warning("the panel in %s was refused: %s", turn.chat.conversation_id, exc)
            return
        except TransientError as exc:
            log.warning("the panel in %s failed, retried: %s", turn.chat.conversation_id, exc)
            return
        pacer.sent(text, now)

    async def finish(self, turn: Turn) -> None:
        """The end state is shown; with `panel_on_done = "delete"` an answered turn's panel goes."""
        if turn.latest.ending != "done" or self.on_done != "delete" or turn.message_id is None:
            return
        chat_id = turn.chat.chat_id
        assert chat_id is not None
        with contextlib.suppress(RejectedError, TransientError):
            await self.api.delete_message(
                DeleteMessage(chat_id=chat_id, message_id=turn.message_id)
            )

    async def recorded(self, turn: Turn) -> int | None:
        """The panel a process before this one sent for the same turn (a restart mid-turn)."""
        try:
            entry = await self.kv.get(turn.chat.conversation_id)
        except KeyNotFoundError:
            return None
        with contextlib.suppress(msgspec.DecodeError):
            record = RECORD.decode(entry.value or b"")
            if record.turn_id == turn.latest.turn_id:
                return record.message_id
        return None

    async def record(self, turn: Turn) -> None:
        assert turn.message_id is not None
        record = PanelRecord(turn_id=turn.latest.turn_id, message_id=turn.message_id)
        with contextlib.suppress(TransientError, nats.errors.Error):
            await self.kv.put(turn.chat.conversation_id, msgspec.json.encode(record))

    # Drafts.

    async def draft(self, turn_id: str) -> None:
        """Send the newest streamed text of a turn as its draft, ≥ DRAFT_GAP_S apart."""
        sent = ""
        try:
            while (text := self.drafts.get(turn_id)) is not None:
                if text.text != sent:
                    await self.send_draft(text)
                    sent = text.text
                await asyncio.sleep(DRAFT_GAP_S)
        finally:
            self.drafting.pop(turn_id, None)

    async def send_draft(self, text: StreamText) -> None:
        chat_id = text.chat.chat_id
        assert chat_id is not None
        request = SendMessageDraft(
            chat_id=chat_id,
            draft_id=zlib.crc32(text.turn_id.encode()) or 1,
            text=text.text,
            message_thread_id=text.chat.thread_id,
        )
        try:
            await self.api.send_message_draft(request)
        except FloodWaitError as exc:
            await asyncio.sleep(exc.retry_after_s)
        except RejectedError as exc:
            if exc.status == 404:
                log.warning("the Bot API has no sendMessageDraft; streaming in the panel instead")
                self.stream_mode = "edit"
                self.stream(self.drafts.pop(text.turn_id, text))  # the newest, in the panel
            else:
                log.info("a draft in %s was refused: %s", text.chat.conversation_id, exc)
        except TransientError as exc:
            log.info("a draft in %s failed: %s", text.chat.conversation_id, exc)
