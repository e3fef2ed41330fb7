"""SessionActors: one task per live session, taking its inputs in order from a mailbox."""

import asyncio
import logging

import httpx
import msgspec
import nats.errors
from nats.errors import NoRespondersError

from services.session import answers, failures, history_store, tool_batch, turn_loop
from services.session.openai_chat import ProviderError
from services.session.prompt import system_prompt
from services.session.tool_results import Results
from shared import bus, redaction, subjects
from shared import logging as service_logging
from shared.config import Config
from shared.ids import SessionId, TurnId, new_id
from shared.messages.history import SessionStarted, TurnFinished, TurnStarted, UserMessage
from shared.messages.outbound import SendReply, ShowTyping
from shared.messages.session import HandleMessage
from shared.messages.tools import CATALOG_REPLY, ListTools, ToolSpec

IDLE_S = 300.0  # an idle actor ends; its next input reloads the history
CATALOG_TIMEOUT_S = 5.0
CATALOG_TTL_S = 30.0
LOAD_RETRY_MAX_S = 5.0
log = logging.getLogger(__name__)


class Input(msgspec.Struct, frozen=True, kw_only=True):
    """A session input and the trace it came with."""

    message: HandleMessage
    trace: str


class ActorPool:
    """Owns the actors: creates one per session on its first input, forgets it when it ends."""

    def __init__(self, conn: bus.Connection, config: Config, http: httpx.AsyncClient) -> None:
        self.conn = conn
        self.config = config
        self.http = http
        self.actors: dict[SessionId, SessionActor] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.catalogs: dict[str, tuple[float, list[ToolSpec]]] = {}

    async def take(self, message: HandleMessage, envelope: bus.Envelope) -> None:
        """The consumer's handler: queue the input for its session's actor (then it is acked)."""
        actor = self.actors.get(message.session_id)
        if actor is None:
            actor = self.actors[message.session_id] = SessionActor(self, message.session_id)
            task = asyncio.create_task(actor.live(), name=f"actor {message.session_id}")
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        actor.mailbox.put_nowait(Input(message=message, trace=envelope.trace))

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
        """Let the actors work through what they hold for up to `grace_s`, then cancel them."""
        for actor in self.actors.values():
            actor.mailbox.put_nowait(None)
        if self.tasks:
            _, pending = await asyncio.wait(self.tasks, timeout=grace_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)


class SessionActor:
    """One session: its history in memory, its turns one after another."""

    def __init__(self, pool: ActorPool, session_id: SessionId) -> None:
        self.pool = pool
        self.session_id = session_id
        self.mailbox: asyncio.Queue[Input | None] = asyncio.Queue()
        self.results = Results(pool.conn, session_id)  # opened by the first tool batch

    async def live(self) -> None:
        service_logging.session_var.set(self.session_id)
        try:
            await self.work()
        finally:
            await self.results.close()

    async def work(self) -> None:
        history = await self.load_history()
        while True:
            try:
                message = await asyncio.wait_for(self.mailbox.get(), IDLE_S)
            except TimeoutError:
                message = None
            if message is None:
                if self.mailbox.empty():
                    del self.pool.actors[self.session_id]  # no await since the check
                    return
                continue
            service_logging.trace_var.set(message.trace)
            service_logging.conv_var.set(message.message.message.chat.conversation_id)
            try:
                await self.take_turn(history, message.message)
            except history_store.FencedError as exc:  # its history moved on: this view is stale
                log.error("stopping the actor of %s: %s", self.session_id, exc)
                self.pool.actors.pop(self.session_id, None)
                return
            except Exception:  # a bug in one turn must not end the session's other turns
                log.exception("turn failed on session %s", self.session_id)

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
        if _already_started(history, message.input_seq):
            log.info("input %d already taken; skipped", message.input_seq)
            return
        turn_id, number, tools = await self.begin(history, message)
        chat = message.message.chat
        started_at = asyncio.get_running_loop().time()
        ending = await self.ending(history, message, turn_id, number, tools)
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


def _already_started(history: history_store.History, input_seq: int) -> bool:
    return any(isinstance(e, TurnStarted) and e.input_seq == input_seq for e in history.events)


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
