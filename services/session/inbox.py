"""A session's inputs past its cursor, as its actor reads them from SC_SESS.

When the actor takes the session, the inputs past the cursor are read (`get_msg`, next by
subject, until nothing is left); from then on they are pushed to it by an ordered consumer as
they are stored, so a turn costs no request to fetch its input. A wake or nudge without a
sequence makes it read once more (a consumer that lost its place is caught up that way).

An input is *done* once its effect is recorded (a turn started, a follow-up folded in, a cancel
carried out, a reply sent); controls may be done ahead of earlier inputs. The cursor stored in
the head is the end of the done prefix, so a new owner re-reads only what may not be done;
history tells it what was (`consumed`).
"""

import asyncio
import contextlib
from collections.abc import Callable, Sequence

import msgspec
import nats.errors
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from shared import bus, subjects
from shared import logging as service_logging
from shared.ids import SessionId
from shared.messages.history import HistoryEvent, TurnFinished, TurnStarted, UserMessage
from shared.messages.session import SESSION_INPUT, ContinueTurn, HandleMessage, SessionInput


class Entry(msgspec.Struct, kw_only=True):
    """One stored input (None when it is bad data) and whether its effect is recorded."""

    seq: int  # its SC_SESS sequence
    input: SessionInput | None
    trace: str = "-"
    done: bool = False


def _nothing() -> None:
    return None


class Inbox:
    """The inputs read and not yet part of the done prefix, oldest first."""

    def __init__(self, conn: bus.Connection, session_id: SessionId, cursor: int) -> None:
        self.conn = conn
        self.session_id = session_id
        self.cursor = cursor  # every input up to here is done
        self.seen = cursor  # every input up to here is read
        self.entries: list[Entry] = []
        self.announced = 0  # the newest input seq a nudge named
        self.arrived = asyncio.Event()  # set when a read finds new inputs
        self._reading = asyncio.Lock()
        self._sub: Subscription | None = None
        self._on_new: Callable[[], None] = _nothing

    async def follow(self, on_new: Callable[[], None]) -> None:
        """From now on, inputs stored past what was read are pushed here as they are stored
        (an ordered consumer from the next sequence): no request per input. `on_new` runs
        after each, so a control reaches a running turn at once."""
        self._on_new = on_new
        config = ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=self.seen + 1
        )
        self._sub = await self.conn.js.subscribe(
            subjects.session_input(self.session_id),
            stream=subjects.SESSION_STREAM,
            ordered_consumer=True,
            config=config,
            cb=self._pushed,
        )

    async def close(self) -> None:
        sub, self._sub = self._sub, None
        if sub is not None:
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()

    async def _pushed(self, msg: Msg) -> None:
        seq = msg.metadata.sequence.stream
        message = await bus.decoded(self.conn, SESSION_INPUT, msg.data, msg.subject, seq)
        trace = (msg.headers or {}).get(subjects.TRACE_HEADER, "-")
        async with self._reading:
            if seq > self.seen:
                self._add(Entry(seq=seq, input=message, trace=trace))
        self._on_new()

    def _add(self, entry: Entry) -> None:
        self.seen = entry.seq
        self.entries.append(entry)
        if entry.input is None:  # bad data, reported as it was read: nothing to do
            self.done(entry)
        self.arrived.set()  # the actor may start on it while the rest is read

    def announce(self, seq: int) -> None:
        """A nudge named the input stored at `seq`."""
        self.announced = max(self.announced, seq)

    async def read(self, *, exact: bool = False) -> bool:
        """Read every input stored past what was seen; True if any came. `exact`: stop at the
        last input a nudge announced, without asking once more whether anything follows (a
        nudge comes after every input; one lost in a reconnect is found by the next full read)."""
        async with self._reading:
            found = False
            while not (exact and self.announced and self.seen >= self.announced):
                entry = await self._next(self.seen)
                if entry is None:
                    break
                self._add(entry)
                found = True
            return found

    async def _next(self, after: int) -> Entry | None:
        subject = subjects.session_input(self.session_id)
        try:
            stored = await self.conn.js.get_msg(
                subjects.SESSION_STREAM, seq=after + 1, subject=subject, next=True
            )
        except NotFoundError:
            return None
        seq = stored.seq or 0
        message = await bus.decoded(self.conn, SESSION_INPUT, stored.data or b"", subject, seq)
        trace = (stored.headers or {}).get(subjects.TRACE_HEADER, "-")
        return Entry(seq=seq, input=message, trace=trace)

    def next(self) -> Entry | None:
        """The oldest input not done."""
        return next((e for e in self.entries if not e.done), None)

    def waiting(self) -> list[Entry]:
        """The inputs not done, oldest first."""
        return [e for e in self.entries if not e.done]

    def done(self, entry: Entry) -> None:
        """Mark an input done; the cursor moves over the done prefix."""
        entry.done = True
        while self.entries and self.entries[0].done:
            self.cursor = self.entries.pop(0).seq

    def forget_taken(self, took: Callable[[int], bool], keep: int | None) -> None:
        """After a takeover: inputs whose effect history holds are done (the last owner started
        a turn on them or folded them in, and stored no cursor past them), so a resumed turn
        never folds them in again; except the open turn's own input (`keep`), which resuming
        the turn takes."""
        for entry in self.waiting():
            message = entry.input
            if not isinstance(message, HandleMessage | ContinueTurn):
                continue
            if message.input_seq != keep and took(message.input_seq):
                self.done(entry)

    def follow_ups(self) -> list[Entry]:
        """The user messages waiting at the front (a control behind them stops the run)."""
        found: list[Entry] = []
        for entry in self.waiting():
            if not isinstance(entry.input, HandleMessage):
                break
            found.append(entry)
        return found


def consumed(events: Sequence[HistoryEvent]) -> set[int]:
    """The input seqs (SC_IN) whose effect history holds: started or continued turns, folded
    follow-ups, carried-out cancels."""
    found: set[int] = set()
    for event in events:
        match event:
            case TurnStarted(input_seq=seq):
                found.add(seq)
            case UserMessage(follow_ups=seqs):
                found.update(seqs)
            case TurnFinished(cancel_seq=seq) if seq:
                found.add(seq)
    return found


def set_context(entry: Entry) -> None:
    """Log lines name the input's trace and conversation."""
    service_logging.trace_var.set(entry.trace)
    match entry.input:
        case HandleMessage(message=message):
            service_logging.conv_var.set(message.chat.conversation_id)
        case None:
            pass
        case control:
            service_logging.conv_var.set(control.chat.conversation_id)
