"""A session's history: read from SC_HIST when the session wakes, appended event by event.

After a compaction the history the session holds (and the model sees) starts at the `Compacted`
event, followed by its verbatim tail (the events stored from `tail_from_seq` on) and whatever came
after: a rebuild reads from the last compaction's tail on (the head says where; a compaction the
head does not know yet is found on the way) and puts each `Compacted` before its tail.

Every append is fenced: it names the subject sequence this writer last saw
(`Nats-Expected-Last-Subject-Sequence`), so an append by a writer that is no longer the only one
fails instead of interleaving or being dropped as a duplicate. A refused append whose event is
already stored under this writer's own msg id was an earlier attempt of the same append (the
server checks the sequence before the msg id) and counts as done.
"""

from collections.abc import Awaitable, Callable, Sequence

from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.errors import BadRequestError, NotFoundError

from shared import bus, subjects
from shared.errors import TransientError
from shared.ids import SessionId, new_id
from shared.messages.history import HISTORY, Compacted, HistoryEvent, ToolResults, TurnStarted

WRONG_LAST_SEQUENCE = 10071


class FencedError(TransientError):
    """Another writer appended to this session's history: this one's view is stale."""


async def _unguarded() -> None:
    return None


class History:
    """The events of one session, in order; `append` stores an event before it counts."""

    def __init__(
        self,
        conn: bus.Connection,
        session_id: SessionId,
        events: list[HistoryEvent],
        last_seq: int,
        bad_seqs: list[int] | None = None,
    ) -> None:
        self.conn = conn
        self.session_id = session_id
        self.events = events  # in the order the model reads them
        self.seqs: list[int] = []  # each event's stream sequence (0: unknown), beside `events`
        self.last_seq = last_seq  # the stream sequence of the subject's last message
        self.appended = 0  # this writer's appends: their msg ids never repeat
        # Per model: how many of the held events are counted, and their tokens (`context_window`).
        self.counted: dict[str, tuple[int, int]] = {}
        self.bad_seqs = bad_seqs or []  # events that cannot be decoded: the session is broken
        self.writer = new_id("w")
        self.guard: Callable[[], Awaitable[None]] = _unguarded  # the owner's lease check

    async def append(self, event: HistoryEvent) -> None:
        await self.guard()
        subject = subjects.history(self.session_id)
        msg_id = subjects.history_msg_id(self.session_id, self.appended, self.writer)
        expected = {subjects.EXPECTED_LAST_SUBJECT_SEQ_HEADER: str(self.last_seq)}
        try:
            ack = await bus.publish(self.conn, subject, event, msg_id=msg_id, headers=expected)
            seq = ack.seq
        except BadRequestError as exc:
            if exc.err_code != WRONG_LAST_SEQUENCE:
                raise
            seq = await self._stored_as(subject, msg_id)
        self.last_seq = seq
        self.appended += 1
        self._add(seq, event)

    def seq_of(self, index: int) -> int:
        """The stream sequence of `events[index]`."""
        self._align()
        return self.seqs[index]

    @property
    def start_seq(self) -> int:
        """Where a rebuild starts reading: the last compaction's tail (0: the beginning)."""
        first = self.events[0] if self.events else None
        return first.tail_from_seq if isinstance(first, Compacted) else 0

    def _add(self, seq: int, event: HistoryEvent) -> None:
        self._align()
        if isinstance(event, Compacted):  # the model's view restarts: summary, tail, the rest
            self.counted.clear()  # the folded events are let go
            kept = [
                (s, e)
                for s, e in zip(self.seqs, self.events, strict=True)
                if s >= event.tail_from_seq and not isinstance(e, Compacted)
            ]
            self.seqs = [seq, *(s for s, _ in kept)]
            self.events = [event, *(e for _, e in kept)]
            return
        self.seqs.append(seq)
        self.events.append(event)

    def _align(self) -> None:
        """Events put in by hand (tests, a fresh session) have no known sequence."""
        if len(self.seqs) < len(self.events):
            self.seqs += [0] * (len(self.events) - len(self.seqs))

    async def _stored_as(self, subject: str, msg_id: str) -> int:
        """The sequence of our own earlier attempt, if that is what the subject ends with."""
        try:
            last = await self.conn.js.get_last_msg(subjects.HISTORY_STREAM, subject)
        except NotFoundError:
            last = None
        if last is not None and (last.headers or {}).get(subjects.MSG_ID_HEADER) == msg_id:
            return last.seq or 0
        raise FencedError(
            f"history of {self.session_id} has events this writer did not append "
            f"(expected its last at {self.last_seq})"
        )


def turns_started(events: Sequence[HistoryEvent]) -> int:
    """How many turns the session has started, those folded into a compaction included."""
    first = events[0] if events else None
    before = first.turns if isinstance(first, Compacted) else 0
    return before + sum(isinstance(e, TurnStarted) for e in events)


def rounds_run(events: Sequence[HistoryEvent], turn_id: str | None) -> int:
    """The tool batches turn `turn_id` has run, those a compaction folded in included."""
    if turn_id is None:
        return 0
    first = events[0] if events else None
    before = first.rounds if isinstance(first, Compacted) and first.turn_id == turn_id else 0
    return before + sum(isinstance(e, ToolResults) and e.turn_id == turn_id for e in events)


def inputs_through(events: Sequence[HistoryEvent]) -> int:
    """The last input seq a compaction folded in (0: none): every one up to it was consumed."""
    first = events[0] if events else None
    return first.inputs_through if isinstance(first, Compacted) else 0


async def load(conn: bus.Connection, session_id: SessionId, start_seq: int = 0) -> History:
    """The session's events from `start_seq` on (its last known compaction's tail), in the
    model's order; the sequences of bad data (reported) are kept aside: a history with a hole
    cannot be rebuilt into what the model was sent."""
    subject = subjects.history(session_id)
    history = History(conn, session_id, [], 0)
    try:
        last = await conn.js.get_last_msg(subjects.HISTORY_STREAM, subject)
    except NotFoundError:
        return history
    history.last_seq = last.seq or 0
    if history.last_seq < start_seq:
        return history
    config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start_seq)
    if not start_seq:
        config = ConsumerConfig(deliver_policy=DeliverPolicy.ALL)
    sub = await conn.js.subscribe(
        subject, stream=subjects.HISTORY_STREAM, ordered_consumer=True, config=config
    )
    try:
        seq = 0
        while seq < history.last_seq:
            msg = await sub.next_msg(timeout=10.0)
            seq = msg.metadata.sequence.stream
            event = await bus.decoded(conn, HISTORY, msg.data, msg.subject, seq)
            if event is None:
                history.bad_seqs.append(seq)
            else:
                history._add(seq, event)
    finally:
        await sub.unsubscribe()
    return history
