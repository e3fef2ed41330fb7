"""A session's history: read from SC_HIST when the session wakes, appended event by event."""

import msgspec

from shared import bus, subjects
from shared.ids import SessionId
from shared.messages.history import HISTORY, HistoryEvent


class History:
    """The events of one session, in order; `append` stores an event before it counts."""

    def __init__(self, conn: bus.Connection, session_id: SessionId, events: list[HistoryEvent]):
        self.conn = conn
        self.session_id = session_id
        self.events = events

    async def append(self, event: HistoryEvent) -> None:
        position = len(self.events)  # the msg id makes a repeated append a no-op
        await bus.publish(
            self.conn,
            subjects.history(self.session_id),
            event,
            msg_id=subjects.history_msg_id(self.session_id, position),
        )
        self.events.append(event)


async def load(conn: bus.Connection, session_id: SessionId) -> History:
    """Every stored event of the session, oldest first."""
    subject = subjects.history(session_id)
    info = await conn.js.stream_info(subjects.HISTORY_STREAM, subjects_filter=subject)
    count = sum((info.state.subjects or {}).values())
    events: list[HistoryEvent] = []
    if count:
        sub = await conn.js.subscribe(
            subject, stream=subjects.HISTORY_STREAM, ordered_consumer=True
        )
        try:
            while len(events) < count:
                msg = await sub.next_msg(timeout=10.0)
                try:
                    events.append(HISTORY.decode(msg.data))
                except msgspec.DecodeError:  # a foreign message in our subject: not history
                    count -= 1
        finally:
            await sub.unsubscribe()
    return History(conn, session_id, events)
