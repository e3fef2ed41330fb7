"""A SessionActor: one session while this process holds its lease (DESIGN §5).

It writes its lease revision into the session head, rebuilds the history, resumes a turn its
last owner left open, then takes the inputs past the head's cursor one after another. Inputs
that come during a turn are read at once (a nudge on its control subject): a cancel stops the
turn, a continue is answered, user messages wait for the turn's next safe boundary. With no input
for IDLE_S it clears its journal, releases the lease and wakes its session again if input came
in between. On SIGTERM it ends the step it is in within the grace, else records where it is and
hands the session over.
"""

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import msgspec
import nats.errors

from services.session import (
    compact_command,
    failures,
    follow_ups,
    heads,
    history_store,
    idle_compaction,
    inbox,
    lease,
    status,
    turns,
)
from services.session.heads import CallEntry, Journal
from services.session.tokens import Calibration
from services.session.tool_results import Results
from services.session.turn_loop import Running
from shared import bus, subjects
from shared import logging as service_logging
from shared.errors import TransientError
from shared.ids import SessionId, TurnId
from shared.messages.contract import Chat
from shared.messages.session import (
    CancelTurn,
    CompactSession,
    ContinueTurn,
    ConversationSettings,
    HandleMessage,
)

if TYPE_CHECKING:
    from services.session.actors import ActorPool

IDLE_S = 30.0  # an actor with no input this long gives its session up
RETRY_MAX_S = 5.0
HAND_OVER_TIMEOUT_S = 2.0
TURNS_RUNNING = "turns_running"  # a gauge in $SRV.STATS (`stellaclaw status`)
log = logging.getLogger(__name__)


class SessionActor:
    """One session while this process owns it: its history in memory, its turns in order."""

    FATAL = (history_store.FencedError,)  # not a turn's failure: the actor must stop

    def __init__(self, pool: "ActorPool", session_id: SessionId, held: lease.Lease) -> None:
        self.pool = pool
        self.conn = pool.conn
        self.session_id = session_id
        self.lease = held
        self.held = heads.Held(head=heads.Head(), revision=0)
        self.history = history_store.History(pool.conn, session_id, [], 0)
        self.inbox = inbox.Inbox(pool.conn, session_id, 0)
        self.results = Results(pool.conn, session_id)  # opened by the first tool batch
        self.running: Running | None = None
        self.cancel_entry: inbox.Entry | None = None
        self.consumed: set[int] = set()
        self.consumed_through = 0  # every input seq up to it: folded into a compaction
        self.calibrations: dict[str, Calibration] = {}  # the token estimate's, by model (§4.1)
        self.compaction_failure = ""  # why the last compaction failed, for `/status`
        self.acknowledged: set[int] = set()  # follow-ups whose 👀 was sent
        self.nudged = asyncio.Event()
        self.full_read = False  # a signal without a sequence came: read until nothing is left
        self.is_stopping = False
        self.is_fenced = False
        self.was_cut = False  # cancelled in the middle of a turn (SIGTERM past the grace)
        self.task: asyncio.Task[None] | None = None
        self._replies: set[asyncio.Task[None]] = set()
        self.next_journal: Journal | None = None  # the running turn's, until it is written
        self.renewed_at = asyncio.get_running_loop().time()  # the lease was just taken

    async def live(self) -> None:
        service_logging.session_var.set(self.session_id)
        keeper = asyncio.create_task(self.keep_lease())
        listener = asyncio.create_task(self.listen())
        try:
            await self.work_through_trouble()
        except history_store.FencedError as exc:
            self.is_fenced = True
            log.error("stopping the actor of %s: %s", self.session_id, exc)
        finally:
            keeper.cancel()
            listener.cancel()
            self.pool.actors.pop(self.session_id, None)
            await self.results.close()
            await self.inbox.close()
            await asyncio.shield(self.give_up())

    def stop(self) -> None:
        """SIGTERM: end after the step in progress (the pool cancels it past the grace)."""
        self.is_stopping = True
        self.inbox.arrived.set()

    async def work_through_trouble(self) -> None:
        """`work()`, resumed from the head after bus trouble (a restarting server) for as long
        as the lease is ours: an actor that gave up then could not wake its session again."""
        delay_s = 0.5
        while True:
            try:
                await self.work()
                return
            except history_store.FencedError:
                raise
            except (TimeoutError, nats.errors.Error, TransientError) as exc:
                log.warning(
                    "bus trouble in %s (%r); resuming in %.1f s", self.session_id, exc, delay_s
                )
            self.running = None
            await asyncio.sleep(delay_s)
            delay_s = min(delay_s * 2, RETRY_MAX_S)

    async def keep_lease(self) -> None:
        """Renew the lease; losing it stops the actor at once."""
        while True:
            await asyncio.sleep(lease.RENEW_S)
            try:
                is_ours = await lease.renew(self.pool.stores.leases, self.lease)
            except (TimeoutError, nats.errors.Error) as exc:
                log.warning("could not renew the lease of %s: %r", self.session_id, exc)
                continue
            if is_ours:
                self.renewed_at = asyncio.get_running_loop().time()
            elif self.task is not None:
                log.error("lost the lease of %s; stopping its actor", self.session_id)
                self.is_fenced = True
                self.task.cancel()
                return

    async def ensure_lease(self) -> None:
        """Before a write or an answer: a lease not renewed for a while (this process was
        stopped, or the bus slow) is renewed first, so a stale owner cannot append or speak
        before its renewal would have told it."""
        now = asyncio.get_running_loop().time()
        if now - self.renewed_at < lease.TTL_S - lease.RENEW_S:  # surely still ours
            return
        if not await lease.renew(self.pool.stores.leases, self.lease):
            self.is_fenced = True
            raise history_store.FencedError(f"the lease of {self.session_id} was taken over")
        self.renewed_at = now

    async def work(self) -> None:
        """Resume what was cut, then take the inputs past the cursor until idle."""
        kv = self.pool.stores.heads
        self.held = await heads.take(self.conn, kv, self.session_id, self.lease.revision)
        start_seq = self.held.head.history_from
        self.history = await history_store.load(self.conn, self.session_id, start_seq)
        self.history.guard = self.ensure_lease
        self.consumed = inbox.consumed(self.history.events)
        self.consumed_through = history_store.inputs_through(self.history.events)
        self.calibrations = dict(self.held.head.calibrations)
        self.compaction_failure = self.held.head.compaction_failure
        await self.inbox.close()
        self.inbox = inbox.Inbox(self.conn, self.session_id, self.held.head.cursor)
        await self.inbox.read()
        opened = turns.open_turn(self)
        self.inbox.forget_taken(self.took, keep=opened[0].input_seq if opened else None)
        await self.inbox.follow(self.take_controls)
        if self.history.bad_seqs:
            await self.mark_broken()
        if opened is not None and not self.is_broken:
            await self.in_turn(turns.resume(self, *opened))
        while not self.is_stopping:
            entry = self.inbox.next()
            if entry is None:
                if not await self.wait_for_input():
                    break
                continue
            await self.handle(entry)

    async def handle(self, entry: inbox.Entry) -> None:
        inbox.set_context(entry)
        match entry.input:
            case None:  # bad data: reported when it was read
                self.inbox.done(entry)
            case HandleMessage(input_seq=seq) | ContinueTurn(input_seq=seq) if self.took(seq):
                self.inbox.done(entry)  # its effect is in history: a takeover re-read it
            case CompactSession(input_seq=seq) if seq <= self.consumed_through:
                self.inbox.done(entry)  # compacted already: the Compacted event consumed it
            case _ if self.is_broken:
                await self.refuse_broken(entry)
            case HandleMessage() as message:
                await self.in_turn(turns.start(self, entry, message))
            case ContinueTurn() as message:
                await self.in_turn(turns.continue_turn(self, entry, message))
            case CompactSession() as message:
                await compact_command.run(self, entry, message)
                self.consumed_through = history_store.inputs_through(self.history.events)
            case CancelTurn() as cancel:  # nothing runs (a running turn takes it at once)
                if cancel.reason == "cancel":
                    text = failures.NOTHING_RUNNING
                    await turns.reply(self, cancel.chat, cancel.input_seq, text)
                self.inbox.done(entry)

    async def in_turn(self, turn: Coroutine[Any, Any, None]) -> None:
        self.conn.counters[TURNS_RUNNING] += 1
        try:
            await turn
        except asyncio.CancelledError:
            self.was_cut = self.running is not None
            raise
        finally:
            self.conn.counters[TURNS_RUNNING] -= 1
            self.running = None
            self.cancel_entry = None

    def begin_running(self, turn_id: TurnId, *, settles: int = 1) -> None:
        now = asyncio.get_running_loop().time()
        self.running = Running(turn_id=turn_id, started_at=now, settles=settles)
        self.take_controls()  # a cancel read before the turn began applies to it

    async def wait_for_input(self) -> bool:
        """Wait up to IDLE_S for an input; False when none came (or the process stops). A
        session due for idle compaction (SPEC §4.4) compacts once its quiet is long enough."""
        self.inbox.arrived.clear()
        if self.inbox.next() is not None:
            return True
        quiet_s = idle_compaction.after_s(self)
        if quiet_s is None:
            return await self.input_within(IDLE_S)
        if await self.input_within(quiet_s):
            return True
        if self.is_stopping:
            return False
        await idle_compaction.run(self)
        return await self.input_within(max(0.0, IDLE_S - quiet_s))

    async def input_within(self, wait_s: float) -> bool:
        """Is there input within `wait_s` (a wake-up without input waits on)? False at once
        when the process stops."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while not self.is_stopping:
            self.inbox.arrived.clear()  # before the look: an input arriving after it sets it
            if self.inbox.next() is not None:
                return True
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, deadline - loop.time())):
                    await self.inbox.arrived.wait()
            if loop.time() >= deadline:
                return self.inbox.next() is not None and not self.is_stopping
        return False

    def signal(self, seq: int) -> None:
        """A nudge or a wake: the input stored at `seq` (0: unknown) is waiting."""
        if seq:
            self.inbox.announce(seq)
        else:
            self.full_read = True
        self.nudged.set()

    async def listen(self) -> None:
        """Read new inputs whenever nudged; controls act on a running turn at once."""
        while True:
            await self.nudged.wait()
            self.nudged.clear()
            exact, self.full_read = not self.full_read, False
            try:
                await self.inbox.read(exact=exact)
            except (TimeoutError, nats.errors.Error) as exc:
                log.warning("could not read the inputs of %s: %r", self.session_id, exc)
                continue
            self.take_controls()

    def compaction_failed(self, reason: str) -> None:
        self.compaction_failure = reason

    def took(self, seq: int) -> bool:
        """Does history hold this input's effect (compacted into a summary, maybe)?"""
        return seq in self.consumed or seq <= self.consumed_through

    def take_controls(self) -> None:
        running = self.running
        if running is None:
            return
        for entry in self.inbox.waiting():
            match entry.input:
                case CancelTurn(input_seq=seq) if not running.cancel.is_set():
                    log.info("cancelling turn %s", running.turn_id)
                    running.cancel_seq, self.cancel_entry = seq, entry
                    running.cancel.set()
                case ContinueTurn(chat=chat, input_seq=seq) if not self.took(seq):
                    self.inbox.done(entry)
                    self._reply(chat, seq, failures.ALREADY_RUNNING)
                case CompactSession(chat=chat, input_seq=seq) if seq not in self.acknowledged:
                    self.acknowledged.add(seq)  # taken when the turn ends
                    self._reply(chat, seq, compact_command.LATER)
                case HandleMessage(input_seq=seq) as message if seq not in self.acknowledged:
                    self.acknowledged.add(seq)  # a follow-up: the user sees it was read
                    self._later(follow_ups.acknowledge(self, message))
                    if running.waiting:  # and waiting tool calls return what they have
                        self._later(follow_ups.cut_waits(self, list(running.waiting)))

    def _reply(self, chat: Chat, input_seq: int, text: str) -> None:
        self._later(turns.reply(self, chat, input_seq, text))

    def _later(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._replies.add(task)
        task.add_done_callback(self._replies.discard)

    def journal_for(
        self, turn_id: TurnId, chat: Chat, settings: ConversationSettings, *, takeovers: int
    ) -> Journal:
        """A turn's journal as it starts (or is taken over). A new turn's is kept in memory
        until its first tool calls: until then its history says all a new owner needs (the
        input is still past the cursor), so a text turn writes no head at all."""
        return Journal(
            turn_id=turn_id,
            phase="calling_model",
            hist_seq=self.history.last_seq,
            takeovers=takeovers,
            started_at=datetime.now(UTC),
            chat=chat,
            settings=settings,
        )

    async def write_journal(self, journal: Journal) -> None:
        """Store the journal, with the inputs taken so far."""
        started_at = self.held.head.started_at or datetime.now(UTC)
        await self.store_head(cursor=self.inbox.cursor, journal=journal, started_at=started_at)

    def turn_journal(self) -> Journal | None:
        """The latest turn's journal: as stored when the head holds that turn's, else as kept in
        memory (a turn that has sent no tool call yet)."""
        stored, pending = self.held.head.journal, self.next_journal
        if pending is not None and (stored is None or stored.turn_id != pending.turn_id):
            return pending
        return stored

    async def journal_batch(self, calls: list[CallEntry]) -> None:
        """Record a group of calls as sent before they go out (the ledger of a takeover)."""
        running = self.running
        journal = self.turn_journal()
        if running is None or journal is None or journal.turn_id != running.turn_id:
            return
        changes = {"phase": "running_tools", "batch": calls, "hist_seq": self.history.last_seq}
        await self.write_journal(msgspec.structs.replace(journal, **changes))

    async def store_head(self, **changes: object) -> None:
        kv = self.pool.stores.heads
        self.held = await heads.store(kv, self.session_id, self.held, **changes)

    @property
    def is_broken(self) -> bool:
        return bool(self.held.head.broken)

    async def mark_broken(self) -> None:
        seqs = ", ".join(str(seq) for seq in self.history.bad_seqs)
        reason = f"history event {seqs} of {subjects.HISTORY_STREAM} cannot be read"
        log.error("session %s is broken: %s", self.session_id, reason)
        await bus.report_bad(self.conn, subjects.history(self.session_id), reason)
        if self.held.head.broken != reason:
            await self.store_head(broken=reason)

    async def refuse_broken(self, entry: inbox.Entry) -> None:
        match entry.input:
            case HandleMessage(message=message, input_seq=seq):
                await turns.reply(self, message.chat, seq, failures.broken())
            case (
                ContinueTurn(chat=chat, input_seq=seq)
                | CancelTurn(chat=chat, input_seq=seq)
                | CompactSession(chat=chat, input_seq=seq)
            ):
                await turns.reply(self, chat, seq, failures.broken())
        self.inbox.done(entry)

    async def give_up(self) -> None:
        """Hand the session back: journal closed (or marked handed over), lease released, and
        the session woken again if a turn was cut or input is waiting."""
        if self.is_fenced:
            return
        is_cut = self.was_cut
        with contextlib.suppress(TimeoutError, nats.errors.Error, TransientError):
            async with asyncio.timeout(HAND_OVER_TIMEOUT_S):
                await self.store_head(**status.closing(self, handed_over=is_cut))
                await lease.release(self.pool.stores.leases, self.lease)
                if is_cut or self.inbox.next() is not None or await self.inbox.read():
                    rewake = subjects.rewake_msg_id(self.session_id, self.lease.revision)
                    await bus.wake(self.conn, self.session_id, rewake)
