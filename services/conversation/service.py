"""Conversation service: routes each inbound message to a command reply or the bound session.

Consumes: SC_IN (`sc.in.<p>.<channel>.<conv>`), one durable per partition, one message at a
          time (order per conversation; any instance may pull any partition).
Produces: session inputs (`HandleMessage` on `sc.sess.<session>`) and their wakes (SC_WAKE),
          command replies (SC_OUT).
Owns:     conversation state (KV sc_conv): model, workspace, session bindings; the only reader and
          writer of sc_conv.
"""

import asyncio
import logging
from datetime import UTC, datetime

from nats.js.kv import KeyValue

from services.conversation import commands, state, store
from shared import bus, layout, subjects
from shared.config import Config
from shared.errors import InputError
from shared.ids import OutId
from shared.lifecycle import Runtime
from shared.messages.inbound import INBOUND, MessageReceived
from shared.messages.outbound import SendReply
from shared.messages.session import HandleMessage

VERSION = "0.1.0"
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
        previous_model: list[str] = []

        def apply(current: state.ConversationState | None) -> state.ConversationState:
            if current is None:
                title = message.sender.display_name
                current = state.new_state(message.chat, title, self.config.default_model, now)
            elif current.model not in self.config.models:  # the model left the config
                previous_model.append(current.model)
                current = state.with_model(current, self.config.default_model)
            return state.received(current, message.chat, now)

        current = await store.change(self.store, conv, apply)
        if previous_model:
            await self.reply(
                current,
                envelope.stream_seq,
                f"Model {previous_model[0]} is no longer configured; switched to {current.model}.",
                suffix="m",
            )
        command = commands.parse(message.text)
        if command is not None:
            text = commands.reply(command, current, self.config)
            await self.reply(current, envelope.stream_seq, text)
            log.info("answered command", extra={"command": command.name})
            return
        await self.forward(current, message, envelope.stream_seq)

    async def forward(
        self, current: state.ConversationState, message: MessageReceived, in_seq: int
    ) -> None:
        session = current.foreground
        handle = HandleMessage(
            session_id=session,
            input_seq=in_seq,
            message=message,
            settings=state.settings(current),
        )
        stored = await bus.publish(
            self.conn,
            subjects.session_input(session),
            handle,
            msg_id=subjects.session_input_msg_id(in_seq),
        )
        await bus.wake(self.conn, session, subjects.wake_msg_id(stored.seq))
        log.info("forwarded to session", extra={"to_session": session, "in_seq": in_seq})

    async def reply(
        self, current: state.ConversationState, in_seq: int, text: str, *, suffix: str = ""
    ) -> None:
        out_id = OutId(subjects.reply_out_id(in_seq) + suffix)
        answer = SendReply(chat=current.chat, out_id=out_id, text=text)
        subject = subjects.outbound(current.chat.channel, current.conversation_id)
        await bus.publish(self.conn, subject, answer, msg_id=out_id)
