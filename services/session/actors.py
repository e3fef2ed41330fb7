"""SessionActors (DESIGN §5): one live owner per session, wherever it runs.

A wake (SC_WAKE) makes a replica try the session's lease; the one that takes it runs the actor,
which writes its lease revision into the session head and reads the inputs from SC_SESS past the
head's cursor, one turn after another, moving the cursor after each. Nothing is acknowledged
before it is done: a killed owner leaves the cursor before the input it was on, and the next owner
resumes that turn from history. An actor with no input for IDLE_S releases its lease, then looks
for input once more and wakes its session again if some came in between.
"""

import asyncio
import contextlib
import logging

import httpx
import msgspec
import nats.errors
from nats.errors import NoRespondersError
from nats.js.errors import NotFoundError
from nats.js.kv import KeyValue

from services.session import answers, failures, heads, history_store, lease, tool_batch, turn_loop
from services.session.openai_chat import ProviderError
from services.session.prompt import system_prompt
from services.session.tool_results import Results
from shared import bus, redaction, subjects
from shared import logging as service_logging
from shared.config import Config
from shared.errors import TransientError
from shared.ids import SessionId, TurnId, new_id
from shared.messages.history import (
    AssistantMessage,
    SessionStarted,
    TurnFinished,
    TurnStarted,
    UserMessage,
)
from shared.messages.outbound import SendReply, ShowTyping
from shared.messages.session import SESSION_INPUT, HandleMessage, WakeSession
from shared.messages.tools import CATALOG_REPLY, ListTools, ToolSpec

IDLE_S = 30.0  # an actor with no input this long gives its session up
CATALOG_TIMEOUT_S = 5.0
CATALOG_TTL_S = 30.0
LOAD_RETRY_MAX_S = 5.0
log = logging.getLogger(__name__)


class Stores(msgspec.Struct, frozen=True, kw_only=True):
    """The buckets the actors keep their ownership and heads in."""

    leases: KeyValue
    heads: KeyValue


class ActorPool:
    """Owns the actors of this process: one per session whose lease it holds."""

    def __init__(
        self, conn: bus.Connection, config: Config, http: httpx.AsyncClient, stores: Stores
    ) -> None:
        self.conn = conn
        self.config = config
        self.http = http
        self.stores = stores
        self.owner = lease.Owner(owner_id="-", pid=0)
        self.actors: dict[SessionId, SessionActor] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.catalogs: dict[str, tuple[float, list[ToolSpec]]] = {}

    async def wake(self, message: WakeSession, envelope: bus.Envelope) -> None:
        """The wake handler: nudge the live actor, or take the lease and start one."""
        session_id = message.session_id
        actor = self.actors.get(session_id)
        if actor is not None:
            actor.nudged.set()
            return
        held = await lease.acquire(self.stores.leases, session_id, self.owner)
        if held is None:
            return  # a live owner elsewhere reads the input from its cursor
        actor = self.actors[session_id] = SessionActor(self, session_id, held)
        task = asyncio.create_task(actor.live(), name=f"actor {session_id}")
        actor.task = task
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def tools(self, pool: str) -> list[ToolSpec] | None:
        """The pool's tool catalog, asked again after CATALOG_TTL_S; None if no runner answers."""
        now = asyncio.get_running_loop().time()
        cached = self.catalogs.get(pool)
        if cached and now - cached[0] < CATALOG_TTL_S:
            return cached[1]
        try:
            specs = await catalog(self.conn, pool)
        except TimeoutError:
            log.warning("no runner of pool %s answered the catalog request", pool)
            return None
        self.catalogs[pool] = (now, specs)
        return specs

    async def finish(self, grace_s: float) -> None:
        """Let each actor end the turn it is in for up to `grace_s`, then cancel it: its lease
        is released and the next owner resumes from its cursor."""
        for actor in self.actors.values():
            actor.is_stopping = True
            actor.nudged.set()
        if self.tasks:
            _, pending = await asyncio.wait(self.tasks, timeout=grace_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)


class SessionActor:
    """One session while this process owns it: its history in memory, its turns in order."""

    def __init__(self, pool: ActorPool, session_id: SessionId, held: lease.Lease) -> None:
        self.pool = pool
        self.session_id = session_id
        self.lease = held
        self.nudged = asyncio.Event()
        self.is_stopping = False
        self.task: asyncio.Task[None] | None = None
        self.results = Results(pool.conn, session_id)  # opened by the first tool batch

    async def live(self) -> None:
        service_logging.session_var.set(self.session_id)
        keeper = asyncio.create_task(self.keep_lease())
        cursor = 0
        try:
            cursor = await self.work_through_trouble()
        except history_store.FencedError as exc:
            log.error("stopping the actor of %s: %s", self.session_id, exc)
        finally:
            keeper.cancel()
            self.pool.actors.pop(self.session_id, None)
            await self.results.close()
            await self.give_up(cursor)

    async def work_through_trouble(self) -> int:
        """`work()`, resumed from the head after bus trouble (a restarting server) for as long
        as the lease is ours: an actor that gave up then could not wake its session again."""
        delay_s = 0.5
        while True:
            try:
                return await self.work()
            except history_store.FencedError:
                raise
            except (TimeoutError, nats.errors.Error, TransientError) as exc:
                log.warning(
                    "bus trouble in %s (%r); resuming in %.1f s", self.session_id, exc, delay_s
                )
            await asyncio.sleep(delay_s)
            delay_s = min(delay_s * 2, LOAD_RETRY_MAX_S)

    async def keep_lease(self) -> None:
        """Renew the lease; losing it stops the actor at once."""
        while True:
            await asyncio.sleep(lease.RENEW_S)
            try:
                is_ours = await lease.renew(self.pool.stores.leases, self.lease)
            except (TimeoutError, nats.errors.Error) as exc:
                log.warning("could not renew the lease of %s: %r", self.session_id, exc)
                continue
            if not is_ours and self.task is not None:
                log.error("lost the lease of %s; stopping its actor", self.session_id)
                self.task.cancel()
                return

    async def work(self) -> int:
        """Take the inputs past the cursor until idle; the cursor reached."""
        held = await heads.take(
            self.pool.conn, self.pool.stores.heads, self.session_id, self.lease.revision
        )
        history = await self.load_history()
        while not self.is_stopping:
            self.nudged.clear()  # before the look: a wake from now on is not missed
            found = await self.next_input(held.head.cursor)
            if found is None:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(IDLE_S):
                        await self.nudged.wait()
                if not self.nudged.is_set():
                    break
                continue
            seq, message = found
            if message is not None:
                await self.take_turn(history, message)
            held = await heads.advance(self.pool.stores.heads, self.session_id, held, seq)
        return held.head.cursor

    async def next_input(self, cursor: int) -> tuple[int, HandleMessage | None] | None:
        """The first input past `cursor` (None inside when it is bad data), or None."""
        subject = subjects.session_input(self.session_id)
        try:
            stored = await self.pool.conn.js.get_msg(
                subjects.SESSION_STREAM, seq=cursor + 1, subject=subject, next=True
            )
        except NotFoundError:
            return None
        seq = stored.seq or 0
        message = await bus.decoded(self.pool.conn, SESSION_INPUT, stored.data or b"", subject, seq)
        trace = (stored.headers or {}).get(subjects.TRACE_HEADER, "-")
        service_logging.trace_var.set(trace)
        if message is not None:
            service_logging.conv_var.set(message.message.chat.conversation_id)
        return seq, message

    async def give_up(self, cursor: int) -> None:
        """Release the lease, then wake the session again if input came in meanwhile."""
        with contextlib.suppress(TimeoutError, nats.errors.Error):
            await lease.release(self.pool.stores.leases, self.lease)
            if self.is_stopping or await self.next_input(cursor) is None:
                return
            rewake = subjects.rewake_msg_id(self.session_id, self.lease.revision)
            await bus.wake(self.pool.conn, self.session_id, rewake)

    async def load_history(self) -> history_store.History:
        """The session's history, waiting out bus trouble (a restarting server) with backoff."""
        delay_s = 0.5
        while True:
            try:
                return await history_store.load(self.pool.conn, self.session_id)
            except (TimeoutError, nats.errors.Error) as exc:
                log.warning("cannot load the history yet (%r); retrying in %.1f s", exc, delay_s)
            await asyncio.sleep(delay_s)
            delay_s = min(delay_s * 2, LOAD_RETRY_MAX_S)

    async def take_turn(self, history: history_store.History, message: HandleMessage) -> None:
        cut = _started(history, message.input_seq)
        if cut is None:
            turn_id, number, tools = await self.begin(history, message)
        elif _is_finished(history, cut[0]):
            log.info("input %d was answered before; skipped", message.input_seq)
            return
        else:  # its owner died mid-turn: resume from what history holds
            turn_id, number = cut
            log.warning("resuming turn %s after a restart", turn_id)
            tools = await self.pool.tools(message.settings.workspace.pool)
        chat = message.message.chat
        started_at = asyncio.get_running_loop().time()
        answered = _answer_of(history, turn_id)
        ending = answered or await self.ending(history, message, turn_id, number, tools)
        answer = SendReply(
            chat=chat,
            out_id=subjects.answer_out_id(turn_id),
            text=ending.text,
            turn_id=turn_id,
            is_failure=ending.outcome != "answered",
        )
        await answers.publish(self.pool.conn, answer)
        await history.append(
            TurnFinished(
                turn_id=turn_id,
                outcome="answered" if ending.outcome == "answered" else "failed",
                error=ending.error,
                can_continue=ending.can_continue,
            )
        )
        elapsed_s = asyncio.get_running_loop().time() - started_at
        log.info("turn %s %s in %.2f s", turn_id, ending.outcome, elapsed_s)

    async def begin(
        self, history: history_store.History, message: HandleMessage
    ) -> tuple[TurnId, int, list[ToolSpec] | None]:
        """Record the turn's start while typing shows and the tool catalog is fetched."""
        if not history.events:
            model = message.settings.model
            started = SessionStarted(
                session_id=self.session_id, session_type="foreground", model=model
            )
            await history.append(started)
        number = 1 + sum(isinstance(e, TurnStarted) for e in history.events)
        turn_id = TurnId(f"{self.session_id}_t{number}")
        chat, text, sender = message.message.chat, message.message.text, message.message.sender
        typing = ShowTyping(chat=chat, out_id=subjects.typing_out_id(turn_id), turn_id=turn_id)

        async def record() -> None:
            await history.append(TurnStarted(turn_id=turn_id, input_seq=message.input_seq))
            await history.append(UserMessage(turn_id=turn_id, text=text, sender=sender))

        async with asyncio.TaskGroup() as tasks:
            outbound = subjects.outbound(chat.channel, chat.conversation_id)
            tasks.create_task(bus.publish(self.pool.conn, outbound, typing, msg_id=typing.out_id))
            tasks.create_task(record())
            tools = tasks.create_task(self.pool.tools(message.settings.workspace.pool))
        return turn_id, number, tools.result()

    async def ending(
        self,
        history: history_store.History,
        message: HandleMessage,
        turn_id: TurnId,
        number: int,
        tools: list[ToolSpec] | None,
    ) -> turn_loop.Ending:
        """Run the turn; every way it can end becomes an Ending the user reads."""
        settings = message.settings
        if tools is None:
            text = failures.tools_unavailable(settings.workspace.pool)
            return turn_loop.Ending(text=text, outcome="failed")
        config = self.pool.config
        # A model this process's config lacks (a rolling config change) falls back as the
        # conversation service does: to the default model.
        model_name = settings.model if settings.model in config.models else config.default_model
        turn = turn_loop.Turn(
            turn_id=turn_id,
            turn_number=number,
            model_name=model_name,
            model=config.models[model_name],
            system_prompt=system_prompt(message.message.chat.conversation_id, model_name),
            history=history,
            http=self.pool.http,
            batch=tool_batch.Batch(
                session_id=self.session_id,
                conversation_id=message.message.chat.conversation_id,
                workspace=settings.workspace,
                max_parallel=config.agent.max_parallel_tools,
            ),
            results=self.results,
            max_round_trips=config.agent.max_round_trips,
        )
        try:
            return await turn_loop.run(turn, tools)
        except ProviderError as exc:  # its body may echo a key: scrubbed before it is cut short
            text = failures.provider_failed(redaction.scrub(exc.reason, self.pool.conn.secrets))
            return turn_loop.Ending(
                text=text, outcome="failed", error="provider", can_continue=True
            )
        except history_store.FencedError:
            raise  # not the turn's failure: another writer owns the history now
        except turn_loop.EmptyResponseError:
            text = failures.empty_twice()
            return turn_loop.Ending(text=text, outcome="failed", error="empty_response")
        except Exception:  # a bug of ours: the user hears of it, the history stays intact
            error_id = new_id("err_")
            log.exception("internal error %s in turn %s", error_id, turn_id)
            text = failures.internal(error_id)
            return turn_loop.Ending(text=text, outcome="failed", error="internal")


def _started(history: history_store.History, input_seq: int) -> tuple[TurnId, int] | None:
    """The turn an input started (its id and number), if any."""
    number = 0
    for event in history.events:
        if isinstance(event, TurnStarted):
            number += 1
            if event.input_seq == input_seq:
                return event.turn_id, number
    return None


def _is_finished(history: history_store.History, turn_id: TurnId) -> bool:
    return any(isinstance(e, TurnFinished) and e.turn_id == turn_id for e in history.events)


def _answer_of(history: history_store.History, turn_id: TurnId) -> turn_loop.Ending | None:
    """The final answer a cut turn had already received (its delivery was cut), if any."""
    last = history.events[-1] if history.events else None
    if isinstance(last, AssistantMessage) and last.turn_id == turn_id and not last.tool_calls:
        return turn_loop.Ending(text=last.text)
    return None


async def catalog(conn: bus.Connection, pool: str) -> list[ToolSpec]:
    """The tool catalog from any runner of the pool (core request/reply)."""
    try:
        reply = await conn.nc.request(
            subjects.tool_catalog(pool), bus.encode(ListTools()), timeout=CATALOG_TIMEOUT_S
        )
    except (NoRespondersError, TimeoutError) as exc:
        raise TimeoutError(f"no runner of pool {pool!r} answered: {exc!r}") from exc
    found = await bus.decoded(conn, CATALOG_REPLY, reply.data, subjects.tool_catalog(pool))
    if found is None:
        raise TimeoutError(f"the runner of pool {pool!r} answered with a malformed catalog")
    return found.tools
