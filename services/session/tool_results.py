"""A session's tool starts and results, read from SC_TOOLRES as they are stored.

One ordered consumer per live actor on `sc.tool.res.<session>.*`, opened before its first call is
sent and kept for the actor's life (not one per batch: that would cost a round trip each). Bad
data on those subjects is counted and reported (`bus.decoded`), never an error of the turn.
"""

import contextlib

import nats.errors
from nats.aio.subscription import Subscription
from nats.js.api import DeliverPolicy

from shared import bus, subjects
from shared.ids import SessionId
from shared.messages.tools import TOOL_EVENT, ToolEvent


class Results:
    """The tool events of one session from the moment it is opened."""

    def __init__(self, conn: bus.Connection, session_id: SessionId) -> None:
        self.conn = conn
        self.session_id = session_id
        self._sub: Subscription | None = None

    async def open(self) -> None:
        """Start reading (idempotent); events stored before this are not seen."""
        if self._sub is None:
            self._sub = await self.conn.js.subscribe(
                subjects.tool_results(self.session_id),
                stream=subjects.TOOL_RESULT_STREAM,
                ordered_consumer=True,
                deliver_policy=DeliverPolicy.NEW,
            )

    async def next(self, timeout_s: float) -> ToolEvent | None:
        """The next event; None for bad data; TimeoutError when none comes within `timeout_s`."""
        assert self._sub is not None, "open() comes before the first call is sent"
        msg = await self._sub.next_msg(timeout=max(timeout_s, 0.001))
        seq = msg.metadata.sequence.stream if msg.reply else 0
        return await bus.decoded(self.conn, TOOL_EVENT, msg.data, msg.subject, seq)

    async def close(self) -> None:
        sub, self._sub = self._sub, None
        if sub is not None:
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()
