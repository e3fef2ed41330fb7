"""Conversation service: routes each inbound message to a command reply or the bound session.

Consumes: SC_IN (`sc.in.<p>.<channel>.<conv>`), one durable per partition, one message at a
          time (order per conversation; any instance may pull any partition).
Produces: session inputs (`HandleMessage`, `CancelTurn`, `ContinueTurn`, `CompactSession` on
          `sc.sess.<session>`),
          their wakes (SC_WAKE) and nudges (core `sc.ctl.sess.<session>`), status queries
          (request on `sc.ctl.sess.<session>`), sandbox probes (request on `sc.tool.probe.<pool>`),
          command replies (SC_OUT).
Owns:     conversation state (KV sc_conv): model, sandbox mode, workspace, session bindings; the
          only reader and writer of sc_conv.
"""

import asyncio
import logging
from datetime import UTC, datetime

import nats.errors
from nats.errors import NoRespondersError
from nats.js.kv import KeyValue

from services.conversation import (
    commands,
    remote_command,
    sandbox_command,
    state,
    store,
    usage_totals,
)
from shared import bus, layout, subjects
from shared.config import Config
from shared.errors import InputError
from shared.ids import OutId, SessionId
from shared.lifecycle import Runtime
from shared.messages.contract import Sender
from shared.messages.inbound import INBOUND, MessageReceived
from shared.messages.outbound import SendReply
from shared.messages.session import (
    NUDGE_TAKEN,
    STATUS,
    CancelTurn,
    CompactSession,
    ContinueTurn,
    HandleMessage,
    NudgeSession,
    SessionInput,
    SessionStatus,
    StatusQuery,
)
from shared.messages.tools import PROBE_REPLY, EndWork, PoolProbed, ProbePool
from shared.sandbox import SandboxSupport
from shared.tools_config import remote_pool

VERSION = "0.1.0"
NUDGE_TIMEOUT_S = 0.5  # a live session answers in a millisecond; else the wake is the way
STATUS_TIMEOUT_S = 2.0  # `/status` without the session's part rather than a late reply
PROBE_TIMEOUT_S = 3.0  # a runner answers from what it found at start; silence means none runs
REMOTE_PROBE_S = 12.0  # the runner connects (≤ 10 s, SPEC §6.6) and checks the path
log = logging.getLogger(__name__)


async def run(runtime: Runtime, stop: asyncio.Event) -> None:
    async with bus.connected(runtime.bus, "conversation") as conn:
        await bus.register(conn, "routing, commands, conversation state", VERSION)
        kv = await bus.bucket(conn, subjects.CONV_BUCKET)
        router = Router(conn, kv, runtime.config)
        async with asyncio.TaskGroup() as tasks:
            for partition in layout.durables(runtime.config.bus)["conversation"]:
                tasks.create_task(bus.consume(conn, partition, INBOUND, router.route, stop))


class Router:
    """Handles one inbound message: state by CAS, then a command reply or a session input."""

    def __init__(self, conn: bus.Connection, kv: KeyValue, config: Config) -> None:
        self.conn = conn
        self.config = config
        self.store = store.Store(conn=conn, kv=kv, cache=store.Cache())

    async def route(self, message: MessageReceived, envelope: bus.Envelope) -> None:
        conv = message.chat.conversation_id
        if not state.is_published_by_its_channel(message.chat, envelope.subject):
            raise InputError(
                f"conversation {conv!r} of channel {message.chat.channel!r} does not match the "
                f"subject {envelope.subject!r}"
            )
        now = datetime.now(UTC)
        in_seq = envelope.stream_seq
        command = commands.parse(message.text)
        previous_model: list[str] = []

        def apply(current: state.ConversationState | None) -> state.ConversationState:
            if current is None:
                title = message.sender.display_name
                current = state.new_state(message.chat, title, self.config.default_model, now)
            elif current.model not in self.config.models:  # the model left the config
                previous_model.append(current.model)
                current = state.with_model(current, self.config.default_model)
            current = state.received(current, message.chat, now)
            if command is not None and command.name == "new":
                current = state.with_new_session(current, in_seq)
            return current

        current = await store.change(self.store, conv, apply)
        if previous_model:
            await self.reply(
                current,
                in_seq,
                f"Model {previous_model[0]} is no longer configured; switched to {current.model}.",
                suffix="m",
            )
        if command is None:
            await self.forward(current, message, in_seq)
            return
        await self.run_command(command, current, in_seq, message.sender)
        log.info("answered command", extra={"command": command.name})

    async def run_command(
        self,
        command: commands.Command,
        current: state.ConversationState,
        in_seq: int,
        sender: Sender,
    ) -> None:
        """Cancel, continue and compact go to the session, which alone knows what runs and replies;
        `/new` binds the next session; the rest is answered here."""
        session, chat = current.foreground, current.chat
        match command.name:
            case "cancel":
                everything = commands.cancels_everything(command)
                if everything is None:
                    await self.reply(current, in_seq, commands.CANCEL_USAGE)
                    return
                cancel = CancelTurn(
                    session_id=session, input_seq=in_seq, chat=chat, everything=everything
                )
                await self.send(cancel)
            case "continue":
                settings = state.settings(current, self.config.sandbox.mode, self.config.remotes)
                await self.send(
                    ContinueTurn(session_id=session, input_seq=in_seq, chat=chat, settings=settings)
                )
            case "compact":
                settings = state.settings(current, self.config.sandbox.mode, self.config.remotes)
                await self.send(
                    CompactSession(
                        session_id=session, input_seq=in_seq, chat=chat, settings=settings
                    )
                )
            case "new":
                old = state.replaced_session(current)
                await self.send(
                    CancelTurn(session_id=old, input_seq=in_seq, chat=chat, reason="new")
                )
                ending = EndWork(conversation_id=chat.conversation_id)  # shells, downloads
                await self.conn.nc.publish(
                    subjects.tool_end(chat.conversation_id), bus.encode(ending)
                )
                await self.reply(current, in_seq, commands.NEW_SESSION)
            case "status":
                await self.status(current, in_seq)
            case "sandbox":
                await self.sandbox(command.argument, current, in_seq, sender)
            case "remote":
                await self.remote(command.argument, current, in_seq)
            case _:
                await self.reply(current, in_seq, commands.reply(command))

    async def forward(
        self, current: state.ConversationState, message: MessageReceived, in_seq: int
    ) -> None:
        handle = HandleMessage(
            session_id=current.foreground,
            input_seq=in_seq,
            message=message,
            settings=state.settings(current, self.config.sandbox.mode, self.config.remotes),
        )
        await self.send(handle)

    async def send(self, message: SessionInput) -> None:
        """A session input, stored once per inbound message (`in:<seq>`), then a nudge for the
        session's live actor; when no process says it holds one, a wake for whichever replica
        takes the session. Both name the input's sequence, so the actor reads exactly that far."""
        session = message.session_id
        stored = await bus.publish(
            self.conn,
            subjects.session_input(session),
            message,
            msg_id=subjects.session_input_msg_id(message.input_seq),
        )
        if not await self.nudged(session, stored.seq):
            await bus.wake(self.conn, session, subjects.wake_msg_id(message.input_seq), stored.seq)
        log.info(
            "sent to session",
            extra={
                "to_session": session,
                "in_seq": message.input_seq,
                "input": type(message).__name__,
            },
        )

    async def nudged(self, session: SessionId, seq: int) -> bool:
        """Did the process holding the session's live actor take the nudge? (No answer, an
        answer of another process first, or bad data: no, and the caller wakes the session.)"""
        nudge = bus.encode(NudgeSession(session_id=session, seq=seq))
        subject = subjects.session_control(session)
        try:
            answer = await self.conn.nc.request(subject, nudge, timeout=NUDGE_TIMEOUT_S)
        except (NoRespondersError, TimeoutError, nats.errors.Error):
            return False
        taken = await bus.decoded(self.conn, NUDGE_TAKEN, answer.data, subject)
        return taken is not None and taken.held

    async def status(self, current: state.ConversationState, in_seq: int) -> None:
        """`/status`, asking the session and the tool pool at once."""
        answer, support, last_day = await asyncio.gather(
            self.session_status(current.foreground),
            self.probe(current.workspace.pool),
            usage_totals.last_day(self.conn, current.conversation_id),
        )
        text = commands.status(current, self.config, answer, support, last_day)
        await self.reply(current, in_seq, text)

    async def sandbox(
        self, argument: str, current: state.ConversationState, in_seq: int, sender: Sender
    ) -> None:
        """`/sandbox [mode]`: a change is stored by CAS before the reply, so the next input
        (and with it the next tool call) carries it."""
        support = await self.probe(current.workspace.pool)
        outcome = sandbox_command.answer(argument, current, self.config, support, sender)
        if isinstance(outcome, str):
            await self.reply(current, in_seq, outcome)
            return

        def apply(latest: state.ConversationState | None) -> state.ConversationState:
            return state.with_sandbox(latest or current, outcome.mode)

        current = await store.change(self.store, current.conversation_id, apply)
        await self.reply(current, in_seq, outcome.text)

    async def remote(self, argument: str, current: state.ConversationState, in_seq: int) -> None:
        """`/remote [name [path] | select | off]`: a fixed remote is checked through its pool's
        probe first; a change is stored by CAS before the reply (it applies from the next turn)."""
        outcome = remote_command.answer(argument, current, self.config.remotes)
        if isinstance(outcome, remote_command.CheckFirst):
            asked = ProbePool(remote=outcome.name, path=outcome.path)
            probed = await self.probed(remote_pool(outcome.name), asked, REMOTE_PROBE_S)
            error = "no tool runner serves it" if probed is None else probed.remote_error or None
            outcome = remote_command.fixed(outcome, error)
        if isinstance(outcome, str):
            await self.reply(current, in_seq, outcome)
            return
        change = outcome.remote

        def apply(latest: state.ConversationState | None) -> state.ConversationState:
            return state.with_remote(latest or current, change)

        current = await store.change(self.store, current.conversation_id, apply)
        await self.reply(current, in_seq, outcome.text)

    async def probe(self, pool: str) -> SandboxSupport | None:
        """What the pool's hosts offer (bubblewrap), or None when no runner answers in time."""
        probed = await self.probed(pool, ProbePool(), PROBE_TIMEOUT_S)
        return probed.sandbox if probed is not None else None

    async def probed(self, pool: str, asked: ProbePool, timeout_s: float) -> PoolProbed | None:
        """A runner of the pool's answer, or None when none answers in time."""
        subject = subjects.tool_probe(pool)
        try:
            answer = await self.conn.nc.request(subject, bus.encode(asked), timeout=timeout_s)
        except (NoRespondersError, TimeoutError):
            log.warning("no tool runner of pool %s answered the probe", pool)
            return None
        return await bus.decoded(self.conn, PROBE_REPLY, answer.data, subject)

    async def session_status(self, session: SessionId) -> SessionStatus | None:
        """The session's part of `/status`, or None when no session service answers in time."""
        subject = subjects.session_control(session)
        query = bus.encode(StatusQuery(session_id=session))
        try:
            answer = await self.conn.nc.request(subject, query, timeout=STATUS_TIMEOUT_S)
        except (NoRespondersError, TimeoutError):
            log.warning("no status from session %s", session)
            return None
        return await bus.decoded(self.conn, STATUS, answer.data, subject)

    async def reply(
        self, current: state.ConversationState, in_seq: int, text: str, *, suffix: str = ""
    ) -> None:
        out_id = OutId(subjects.reply_out_id(in_seq) + suffix)
        answer = SendReply(chat=current.chat, out_id=out_id, text=text)
        subject = subjects.outbound(current.chat.channel, current.conversation_id)
        await bus.publish(self.conn, subject, answer, msg_id=out_id)
