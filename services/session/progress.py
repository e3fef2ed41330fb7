"""What a foreground turn shows while it runs (SPEC §12.6, §12.7): the progress panel's state,
published as whole ShowProgress snapshots, and the answer as it streams (StreamText).

Nothing is published until the panel is due: at the first tool batch (at once) or once the
turn has run PANEL_AFTER_S. From then on a snapshot goes out at most every INTERVAL_S, the
newest state winning, and one with the ending when the turn ends. A turn answered quickly without
tools publishes no snapshot at all. Background sessions and subagents show nothing.
"""

import asyncio
import logging
import math
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, assert_never

import msgspec
import nats.errors

from services.session.pacing import Clock, Pacer, Timer
from services.session.providers.protocol import (
    CallStarted,
    ReasoningDelta,
    Retrying,
    StreamEvent,
    TextDelta,
)
from services.session.streaming import AnswerStream
from services.session.tool_briefs import brief, one_line
from shared import bus, subjects
from shared.errors import TransientError
from shared.ids import TurnId
from shared.messages.contract import Chat
from shared.messages.history import AssistantMessage, ToolCall, ToolResult
from shared.messages.outbound import (
    Ending,
    Phase,
    ShowProgress,
    StreamText,
    ToolLine,
    ToolLineState,
)

if TYPE_CHECKING:
    from services.session.actor import SessionActor

PANEL_AFTER_S = 3.0  # SPEC §12.6: the panel appears at the first batch or after 3 s
INTERVAL_S = 0.5
END_TIMEOUT_S = 2.0  # the ending's publish is waited for this long at most
PREAMBLE_CHARS = 200
RESUMING = "Interrupted by a restart — resuming…"  # SPEC §3.9, until the next update
log = logging.getLogger(__name__)

Send = Callable[[ShowProgress | StreamText], Coroutine[Any, Any, None]]


class Target(msgspec.Struct, frozen=True, kw_only=True):
    """Where a turn's progress goes, and what of it."""

    chat: Chat
    turn_id: TurnId
    model: str
    started_at: datetime
    first_seq: int = 1  # the first snapshot's; the seqs of a turn only grow
    is_shown: bool = True  # a foreground turn: it has a panel
    is_resumed: bool = False  # taken over: the last owner's panel may be up, shown at once
    calls_before: int = 0  # tool calls the turn made before this owner took it
    streams: bool = False  # its answer streams (Telegram private chats, `telegram.stream`)


class Progress:
    """One turn's panel state; the turn loop tells it what happens, it publishes paced."""

    def __init__(self, target: Target, send: Send, clock: Clock) -> None:
        self.target = target
        self.model = target.model
        self._send = send
        self._clock = clock
        self._seq = target.first_seq - 1
        self.phase: Phase = "thinking"
        self.lines: list[ToolLine] = []
        self._line_of: dict[str, int] = {}
        self.calls = target.calls_before
        self.has_batch = target.calls_before > 0
        self.preamble = ""
        self.new_messages = 0
        self.warning = RESUMING if target.is_resumed else ""
        self._ending: Ending = ""
        self._reason = ""
        self._pacer = Pacer(self._publication, INTERVAL_S, clock)
        self._stream: AnswerStream | None = None
        if target.is_shown and target.streams:
            self._stream = AnswerStream(self._stream_text, send, clock)
        self._due_at = math.inf  # when the panel is due without a batch
        self._timer: Timer | None = None
        if target.is_shown:
            elapsed_s = (datetime.now(UTC) - target.started_at).total_seconds()
            wait_s = max(0.0, PANEL_AFTER_S - elapsed_s)
            if target.is_resumed:
                wait_s = 0.0
            self._due_at = clock.time() + wait_s
            self._timer = clock.call_later(wait_s, self._now_due)

    @property
    def is_due(self) -> bool:
        """Is the panel due (so its states go out)?"""
        return self.target.is_shown and (self.has_batch or self._clock.time() >= self._due_at)

    def model_call(self) -> None:
        """A model call starts (again, after a batch or a compaction)."""
        self._set_phase("thinking")
        if self._stream is not None:
            self._stream.begin()

    def on_event(self, event: StreamEvent) -> None:
        """What the model streams: text is the answer being written, until a tool call shows
        it was a preamble."""
        match event:
            case TextDelta(text=text):
                self._set_phase("writing")
                if self._stream is not None:
                    self._stream.add(text)
            case CallStarted():
                self._set_phase("thinking")
                if self._stream is not None:
                    self._stream.stop()
            case Retrying():
                self.model_call()
            case ReasoningDelta():
                pass  # still thinking
            case unhandled:
                assert_never(unhandled)

    def answered(self, model: str) -> None:
        """The call returned (from `model`: a fallback, maybe); its text streams no more."""
        if self._stream is not None:
            self._stream.stop()
        if model != self.model:
            self.model = model
            self._changed()

    def compacting(self) -> None:
        self._set_phase("compacting")

    def batch_started(self, calls: list[ToolCall], preamble: str) -> None:
        """A batch starts: its lines, running; the first batch makes the panel due at once."""
        self.lines = [
            ToolLine(tool=call.name, brief=brief(call.name, call.arguments), state="running")
            for call in calls
        ]
        self._line_of = {call.call_id: index for index, call in enumerate(calls)}
        self.calls += len(calls)
        if preamble.strip():
            self.preamble = one_line(preamble, PREAMBLE_CHARS)
        self.phase = "tools"
        is_first = not self.has_batch
        self.has_batch = True
        self._changed(at_once=is_first)

    def call_settled(self, result: ToolResult) -> None:
        index = self._line_of.get(result.call_id)
        if index is None:
            return
        line = self.lines[index]
        state: ToolLineState = "failed" if result.is_error else "done"
        if line.state != state:
            self.lines[index] = msgspec.structs.replace(line, state=state)
            self._changed()

    def batch_settled(self, results: list[ToolResult]) -> None:
        """Every call of the batch has its result (some never ran: malformed, cancelled)."""
        for result in results:
            self.call_settled(result)

    def warn(self, text: str) -> None:
        """A fallback notice (SPEC §7.3); the panel puts its own ⚠️ before it."""
        self.warning = text.removeprefix("⚠️").strip()
        self._changed()

    def follow_ups(self, count: int) -> None:
        """Follow-ups received and waiting for the next step (SPEC §3.5)."""
        if count != self.new_messages:
            self.new_messages = count
            self._changed()

    async def end(self, ending: Ending, reason: str = "") -> None:
        """The turn ended: the stream stops, and a panel that was due gets its ending."""
        if self._stream is not None:
            await self._stream.finish(END_TIMEOUT_S)
        self._cancel_timer()
        if not self.is_due:
            self._pacer.stop()  # no panel: nothing to finalize
            return
        self._ending, self._reason = ending, reason
        self._pacer.changed(at_once=True)
        await self._pacer.flush(END_TIMEOUT_S)
        self._pacer.stop()

    async def settled(self, timeout_s: float = END_TIMEOUT_S) -> None:
        """Wait until no publish is in flight (changes still paced wait their turn)."""
        await self._pacer.settled(timeout_s)
        if self._stream is not None:
            await self._stream.settled(timeout_s)

    def stop(self) -> None:
        """The turn was cut (or is over): no more publishes, none left running."""
        self._cancel_timer()
        self._pacer.stop()
        if self._stream is not None:
            self._stream.cut()

    def _set_phase(self, phase: Phase) -> None:
        if phase != self.phase:
            self.phase = phase
            self._changed()

    def _changed(self, *, at_once: bool = False) -> None:
        if self.warning == RESUMING:
            self.warning = ""
        if self.is_due and not self._ending:
            self._pacer.changed(at_once=at_once)

    def _now_due(self) -> None:
        self._timer = None
        if not self._ending:
            self._pacer.changed(at_once=True)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _publication(self) -> Coroutine[Any, Any, None]:
        """The publish of the panel's state as it is now."""
        target, seq = self.target, self._next_seq()
        snapshot = ShowProgress(
            chat=target.chat,
            out_id=subjects.progress_out_id(target.turn_id, seq),
            turn_id=target.turn_id,
            seq=seq,
            model=self.model,
            started_at=target.started_at,
            phase=self.phase,
            tools=list(self.lines),
            tools_done=sum(line.state != "running" for line in self.lines),
            calls=self.calls,
            has_batch=self.has_batch,
            preamble=self.preamble,
            new_messages=self.new_messages,
            warning=self.warning,
            ending=self._ending,
            reason=self._reason,
        )
        return self._send(snapshot)

    def _stream_text(self, text: str) -> StreamText:
        target, seq = self.target, self._next_seq()
        out_id = subjects.stream_out_id(target.turn_id, seq)
        return StreamText(
            chat=target.chat, out_id=out_id, turn_id=target.turn_id, seq=seq, text=text
        )


def for_turn(
    actor: "SessionActor", turn_id: TurnId, chat: Chat, model: str, *, is_resumed: bool = False
) -> Progress:
    """The progress of a turn of `actor`'s session. Its seqs start at the wall clock's
    milliseconds, so a new owner's (and their out ids, which dedupe) follow the last one's."""
    telegram = actor.pool.config.telegram
    journal = actor.turn_journal()
    started_at = journal.started_at if journal is not None and journal.turn_id == turn_id else None
    target = Target(
        chat=chat,
        turn_id=turn_id,
        model=model,
        started_at=started_at or datetime.now(UTC),
        first_seq=round(datetime.now(UTC).timestamp() * 1000),
        is_shown=actor.held.head.session_type == "foreground",
        is_resumed=is_resumed,
        calls_before=sum(
            len(event.tool_calls)
            for event in actor.history.events
            if isinstance(event, AssistantMessage) and event.turn_id == turn_id
        ),
        streams=(
            telegram is not None
            and telegram.stream != "off"
            and chat.channel == "telegram"
            and chat.kind == "private"
        ),
    )
    subject = subjects.outbound(chat.channel, chat.conversation_id)

    async def send(output: ShowProgress | StreamText) -> None:
        try:
            await bus.publish(actor.conn, subject, output, msg_id=output.out_id)
        except (TimeoutError, nats.errors.Error, TransientError) as exc:  # the next one says all
            log.warning("could not publish %s: %r", output.out_id, exc)

    shown = Progress(target, send, asyncio.get_running_loop())
    shown.follow_ups(len(actor.inbox.follow_ups()))  # acknowledged before the turn ran
    if actor.running is not None:
        actor.running.progress = shown  # follow-ups arriving from now on are counted
    return shown
