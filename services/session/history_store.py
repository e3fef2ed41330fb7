"""A session's history: read from SC_HIST when the session wakes, appended event by event.

Every append is fenced: it names the subject sequence this writer last saw
(`Nats-Expected-Last-Subject-Sequence`), so an append by a writer that is no longer the only one
fails instead of interleaving or being dropped as a duplicate. A refused append whose event is
already stored under this writer's own msg id was an earlier attempt of the same append (the
server checks the sequence before the msg id) and counts as done.
"""

from collections.abc import Awaitable, Callable

from nats.js.errors import BadRequestError, NotFoundError

from shared import bus, subjects
from shared.errors import TransientError
from shared.ids import SessionId, new_id
from shared.messages.history import HISTORY, HistoryEvent

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
        self.events = events
        self.last_seq = last_seq  # the stream sequence of the subject's last message
        self.bad_seqs = bad_seqs or []  # events that cannot be decoded: the session is broken
        self.writer = new_id("w")
        self.guard: Callable[[], Awaitable[None]] = _unguarded  # the owner's lease check

    async def append(self, event: HistoryEvent) -> None:
        await self.guard()
        subject = subjects.history(self.session_id)
        msg_id = subjects.history_msg_id(self.session_id, len(self.events), self.writer)
        expected = {subjects.EXPECTED_LAST_SUBJECT_SEQ_HEADER: str(self.last_seq)}
        try:
            ack = await bus.publish(self.conn, subject, event, msg_id=msg_id, headers=expected)
            seq = ack.seq
        except BadRequestError as exc:
            if exc.err_code != WRONG_LAST_SEQUENCE:
                raise
            seq = await self._stored_as(subject, msg_id)
        self.last_seq = seq
        self.events.append(event)

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


async def load(conn: bus.Connection, session_id: SessionId) -> History:
    """Every stored event of the session, oldest first; the sequences of bad data (reported)
    are kept aside: a history with a hole cannot be rebuilt into what the model was sent."""
    subject = subjects.history(session_id)
    info = await conn.js.stream_info(subjects.HISTORY_STREAM, subjects_filter=subject)
    count = sum((info.state.subjects or {}).values())
    events: list[HistoryEvent] = []
    bad_seqs: list[int] = []
    last_seq = 0
    if count:
        sub = await conn.js.subscribe(
            subject, stream=subjects.HISTORY_STREAM, ordered_consumer=True
        )
        try:
            for _ in range(count):
                msg = await sub.next_msg(timeout=10.0)
                last_seq = msg.metadata.sequence.stream
                event = await bus.decoded(conn, HISTORY, msg.data, msg.subject, last_seq)
                if event is None:
                    bad_seqs.append(last_seq)
                else:
                    events.append(event)
        finally:
            await sub.unsubscribe()
    return History(conn, session_id, events, last_seq, bad_seqs)
