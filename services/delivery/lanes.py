"""Per-chat lanes (SPEC §12.9, DESIGN §4): the outputs of one chat are handled in order, and a
chat that waits (a 429 with a long `retry_after`, a slow upload, a dead chat) holds up no other.

One durable feeds every lane; the server's `max_ack_pending` is the window all chats share, and no
chat may hold more than CHAT_CAP of it: beyond that its outputs are handed back (nak, with a short
delay) and taken in order later. Order within a chat survives the hand-back: once a chat has
handed one back, it takes only that one next (the lowest it handed back), handing back any later
one that comes first. Snapshots that only the newest of matters (a turn's progress, its streamed
text) replace the one waiting before them, which is acked at once.

Every message waiting in a lane is kept alive with `in_progress` (the durable's ack wait is short,
so an output held by a killed process returns soon); at a stop the waiting ones are handed back
at once for the next process. Each output is then handled by `shared.bus.deliver`: retried while
its errors are transient, acked after its handler returned.
"""

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any

import msgspec
import nats.errors
from nats.aio.msg import Msg

from shared import bus
from shared.bus import Connection, Consumer, Handler, Lane
from shared.messages.outbound import OUTPUT, Output

CHAT_CAP = 32  # outputs one chat may hold of the shared window
HAND_BACK_S = 1.0  # a handed-back output returns after this
Supersedes = Callable[[Output, Output], bool]  # does the new one make the waiting one moot?
log = logging.getLogger(__name__)


class Waiting(msgspec.Struct, kw_only=True):
    """An output in a lane: the newest delivery of its message, and what it says."""

    msg: Msg
    seq: int
    output: Output | None  # None: it cannot be read (`deliver` reports it)
    handed_back: int = 0  # deliveries that were our own hand-backs, not failed handlings


class ChatLane:
    """One chat's outputs, in stream order."""

    def __init__(self) -> None:
        self.queue: deque[Waiting] = deque()
        self.held_back: set[int] = set()  # sequences handed back, to be taken lowest first
        self.handed: dict[int, int] = {}  # sequence: how many times it was handed back
        self.arrived = asyncio.Event()
        self.worker: asyncio.Task[None] | None = None


class Lanes:
    """The dispatcher: fetches from the durable and feeds each chat's lane."""

    def __init__(
        self, conn: Connection, consumer: Consumer, handle: Handler[Output], stop: asyncio.Event
    ) -> None:
        self.conn = conn
        self.consumer = consumer
        self.handle = handle
        self.stop = stop
        self.supersedes: Supersedes = lambda old, new: False
        self.lanes: dict[str, ChatLane] = {}
        self.settling: set[asyncio.Future[None]] = set()
        self.lane = Lane(consumer=consumer, decoder=OUTPUT, stop=stop)

    async def run(self, tasks: asyncio.TaskGroup) -> None:
        """Fetch until `stop`; then hand back what waits and let the outputs in hand finish."""
        sub = await bus.bind(self.conn, self.consumer)
        beating = tasks.create_task(self.heartbeat())
        stopping = asyncio.ensure_future(self.stop.wait())
        try:
            while not self.stop.is_set():  # one at a time: handing one to its lane is instant
                for msg in await bus.fetch_next(sub, self.consumer, stopping):
                    self.take(msg, tasks)
        finally:
            stopping.cancel()
            beating.cancel()
            await self.hand_back_all()
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()

    def take(self, msg: Msg, tasks: asyncio.TaskGroup) -> None:
        """Put a fetched message in its chat's lane (or hand it back, keeping the order)."""
        chat = msg.subject.rsplit(".", 1)[-1]
        lane = self.lanes.get(chat)
        if lane is None:
            lane = self.lanes[chat] = ChatLane()
        seq = msg.metadata.sequence.stream
        for waiting in lane.queue:
            if waiting.seq == seq:  # delivered again while it waits: keep the newest delivery
                waiting.msg = msg
                return
        if (lane.held_back and seq != min(lane.held_back)) or len(lane.queue) >= CHAT_CAP:
            self.hand_back(lane, msg, seq)
            return
        lane.held_back.discard(seq)
        waiting = Waiting(msg=msg, seq=seq, output=_read(msg), handed_back=lane.handed.pop(seq, 0))
        if not self.coalesced(lane, waiting):
            lane.queue.append(waiting)
        lane.arrived.set()
        if lane.worker is None or lane.worker.done():
            lane.worker = tasks.create_task(self.work(chat, lane))

    def coalesced(self, lane: ChatLane, new: Waiting) -> bool:
        """Replace a waiting snapshot the new output makes moot (never the one being sent)."""
        if new.output is None:
            return False
        for index, old in enumerate(lane.queue):
            if index == 0 or old.output is None:
                continue  # the head may be in hand
            if self.supersedes(old.output, new.output):
                lane.queue[index] = new
                self.later(_settle(old.msg))
                return True
        return False

    def hand_back(self, lane: ChatLane, msg: Msg, seq: int) -> None:
        lane.held_back.add(seq)
        lane.handed[seq] = lane.handed.get(seq, 0) + 1
        self.later(_nak(msg, HAND_BACK_S))

    def later(self, settling: Coroutine[Any, Any, None]) -> None:
        """An ack or nak sent without waiting for it (fire-and-forget, kept until done)."""
        task = asyncio.ensure_future(settling)
        self.settling.add(task)
        task.add_done_callback(self.settling.discard)

    async def work(self, chat: str, lane: ChatLane) -> None:
        """Handle the lane's outputs one at a time, in order, until it is empty."""
        while lane.queue:
            waiting = lane.queue[0]
            await bus.deliver(
                self.conn, waiting.msg, self.lane, self.handle, ignored=waiting.handed_back
            )
            lane.queue.popleft()
        if not lane.held_back:
            self.lanes.pop(chat, None)

    async def heartbeat(self) -> None:
        """Keep every waiting output alive well inside the durable's ack wait."""
        beat_s = max(0.5, self.consumer.ack_wait_s / 3)
        while True:
            await asyncio.sleep(beat_s)
            for lane in list(self.lanes.values()):
                for waiting in list(lane.queue):
                    with contextlib.suppress(nats.errors.Error):
                        await waiting.msg.in_progress()

    async def hand_back_all(self) -> None:
        """At a stop: every output not in hand goes back for the next process at once."""
        for lane in self.lanes.values():
            for waiting in list(lane.queue)[1:]:
                with contextlib.suppress(nats.errors.Error):
                    await waiting.msg.nak()


def _read(msg: Msg) -> Output | None:
    try:
        return OUTPUT.decode(msg.data)
    except msgspec.DecodeError:
        return None


async def _settle(msg: Msg) -> None:
    with contextlib.suppress(nats.errors.Error):
        await msg.ack()


async def _nak(msg: Msg, delay_s: float) -> None:
    with contextlib.suppress(nats.errors.Error):
        await msg.nak(delay=delay_s)
