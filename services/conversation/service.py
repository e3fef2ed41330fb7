"""Conversation service: routes each inbound message to a command reply or the bound session.

Consumes: SC_IN (`sc.in.<p>.<channel>.<conv>`), one durable per partition, one message at a
          time (order per conversation; any instance may pull any partition): messages,
          access requests of strangers, the bot's removal from a group.
Produces: session inputs (`HandleMessage`, `CancelTurn`, `ContinueTurn`, `CompactSession` on
          `sc.sess.<session>`),
          their wakes (SC_WAKE) and nudges (core `sc.ctl.sess.<session>`), status queries
          (request on `sc.ctl.sess.<session>`), sandbox probes (request on `sc.tool.probe.<pool>`),
          command replies, refusals and admin notifications (SC_OUT), the end of a conversation's
          tool work (core `sc.ctl.tool.end.<conv>`).
Owns:     conversation state (KV sc_conv): model, reasoning, sandbox mode, workspace, session
          bindings, album parts waiting; the only reader and writer of sc_conv. Authorization
          (KV sc_auth): admins and each chat's access; its only writer.
"""

import asyncio
import logging
from datetime import UTC, datetime

import msgspec
from nats.js.kv import KeyValue

from services.conversation import (
    access,
    admin_command,
    albums,
    commands,
    settings_commands,
    state,
    store,
)
from shared import bus, layout, subjects
from shared.access import chat_conversation
from shared.config import Config
from shared.errors import InputError
from shared.ids import OutId
from shared.lifecycle import Runtime
from shared.messages.contract import Chat
from shared.messages.inbound import (
    INBOUND,
    AccessRequested,
    ChatRemoved,
    InboundMessage,
    MessageReceived,
)
from shared.messages.outbound import Button, SendReply
from shared.messages.session import CancelTurn, HandleMessage
from shared.messages.tools import EndWork

VERSION = "0.1.0"
log = logging.getLogger(__name__)


async def run(runtime: Runtime, stop: asyncio.Event) -> None:
    async with bus.connected(runtime.bus, "conversation") as conn:
        await bus.register(conn, "routing, commands, conversation state", VERSION)
        kv = await bus.bucket(conn, subjects.CONV_BUCKET)
        auth = await bus.bucket(conn, subjects.AUTH_BUCKET)
        router = Router(conn, kv, auth, runtime.config)
        await router.warn_without_admin()
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(router.resume_albums())
                for partition in layout.durables(runtime.config.bus)["conversation"]:
                    tasks.create_task(bus.consume(conn, partition, INBOUND, router.route, stop))
        finally:
            for timer in list(router.timers):  # their albums' markers stay for the next start
                timer.cancel()


class Router(settings_commands.SettingsCommands):
    """Handles one inbound message: state by CAS, then a command reply or a session input."""

    def __init__(self, conn: bus.Connection, kv: KeyValue, auth: KeyValue, config: Config):
        super().__init__(conn, store.Store(conn=conn, kv=kv, cache=store.Cache()), config)
        self.gate = access.Gate(conn, auth, config.telegram)
        self.locks: dict[str, asyncio.Lock] = {}
        self.timers: set[asyncio.Task[None]] = set()

    async def admins(self) -> frozenset[int]:
        return await self.gate.admins()

    async def warn_without_admin(self) -> None:
        if self.config.telegram is not None and not await self.gate.admins():
            log.warning(
                "no Telegram admin exists: the first private-chat user to send "
                "/admin_authorize becomes the admin (or set telegram.admin_user_ids)"
            )

    async def route(self, message: InboundMessage, envelope: bus.Envelope) -> None:
        conv = message.chat.conversation_id
        if not state.is_published_by_its_channel(message.chat, envelope.subject):
            raise InputError(
                f"conversation {conv!r} of channel {message.chat.channel!r} does not match the "
                f"subject {envelope.subject!r}"
            )
        in_seq = envelope.stream_seq
        async with self.lock(conv):
            match message:
                case AccessRequested():
                    notes = await self.gate.requested(message)
                    await self.notes(notes, in_seq)
                case ChatRemoved():
                    log.info("the bot left the chat; ending the conversation")
                    await self.end(conv, in_seq)
                case MessageReceived():
                    await self.received(message, in_seq)

    def lock(self, conv: str) -> asyncio.Lock:
        """One conversation's steps in this process, in order (an album's flush and a message)."""
        if len(self.locks) > store.CACHE_SIZE:
            for key in [k for k, held in self.locks.items() if not held.locked()]:
                del self.locks[key]
        return self.locks.setdefault(conv, asyncio.Lock())

    async def received(self, message: MessageReceived, in_seq: int) -> None:
        conv = message.chat.conversation_id
        command = commands.parse(message.text) if not message.media_group_id else None
        is_new = command is not None and command.name == "new"
        arrival = Arrival(message, in_seq, self.config, is_new=is_new)
        current = await store.change(self.store, conv, arrival.apply)
        previous_model, waiting = arrival.previous_model, arrival.waiting
        if waiting:
            await self.pass_on(current, waiting[0])
        for index, notice in enumerate(message.notices):  # a file too large, an unreadable kind
            await self.reply(current, in_seq, notice, suffix=f"w{index}")
        if not message.media_group_id and not has_content(message):
            return
        if message.media_group_id:
            await self.store.kv.put(albums.marker_key(conv), b"")
            self.flush_later(conv, albums.QUIET_S)
            return
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
        await self.run_command(command, current, in_seq, message)
        log.info("answered command", extra={"command": command.name})

    async def run_command(
        self,
        command: commands.Command,
        current: state.ConversationState,
        in_seq: int,
        message: MessageReceived,
    ) -> None:
        """Cancel, continue and compact go to the session, which alone knows what runs and replies;
        `/new` binds the next session; admin commands change sc_auth; the rest is answered here."""
        if command.name in access.ADMIN_COMMANDS:
            done = await admin_command.run(self.gate, command, message.chat, message.sender)
            await self.notes(done.notes, in_seq)
            if done.ended is not None:
                await self.end_chat(done.ended.chat, in_seq)
            return
        if await self.settings_command(command, current, in_seq, message.sender):
            return
        match command.name:
            case "new":
                old = state.replaced_session(current)
                chat = current.chat
                await self.send(
                    CancelTurn(session_id=old, input_seq=in_seq, chat=chat, reason="new")
                )
                ending = EndWork(conversation_id=chat.conversation_id)  # shells, downloads
                await self.conn.nc.publish(
                    subjects.tool_end(chat.conversation_id), bus.encode(ending)
                )
                await self.reply(current, in_seq, commands.NEW_SESSION)
            case _:
                await self.reply(current, in_seq, commands.reply(command, message.bot_name))

    async def forward(
        self, current: state.ConversationState, message: MessageReceived, in_seq: int
    ) -> None:
        handle = HandleMessage(
            session_id=current.foreground,
            input_seq=in_seq,
            message=message,
            settings=self.settings_of(current),
        )
        await self.send(handle)

    # Albums.

    def flush_later(self, conv: str, delay_s: float) -> None:
        task = asyncio.create_task(self.flush(conv, delay_s))
        self.timers.add(task)
        task.add_done_callback(self.timers.discard)

    async def resume_albums(self) -> None:
        """Albums a stopped instance left waiting: passed on after their quiet time."""
        for conv in await store.marked(self.store, albums.marker_key("*")):
            self.flush_later(conv.removeprefix(albums.marker_key("")), albums.QUIET_S)

    async def flush(self, conv: str, delay_s: float) -> None:
        """Pass an album on once it has been quiet for QUIET_S: sealed, sent, then removed."""
        await asyncio.sleep(delay_s)  # the album's quiet time; later parts move it on
        async with self.lock(conv):
            current, _ = await store.load(self.conn, self.store.kv, conv)
            album = current.album if current is not None else None
            if album is None:
                await self.store.kv.delete(albums.marker_key(conv))
                return
            left = albums.quiet_left(album, datetime.now(UTC))
            if left > 0 and not album.sealed:
                self.flush_later(conv, left)
                return

            def seal(latest: state.ConversationState | None) -> state.ConversationState:
                assert latest is not None
                if latest.album is None or latest.album.first_seq != album.first_seq:
                    return latest
                return msgspec.structs.replace(
                    latest, album=msgspec.structs.replace(latest.album, sealed=True)
                )

            current = await store.change(self.store, conv, seal)
            if current.album is not None and current.album.first_seq == album.first_seq:
                await self.pass_on(current, current.album)
            if current.album is None or current.album.first_seq == album.first_seq:
                await self.store.kv.delete(albums.marker_key(conv))

    async def pass_on(self, current: state.ConversationState, album: albums.Album) -> None:
        """Forward an album as one message, then drop it from the state (if still there)."""
        message = albums.merged(album)
        log.info("passing on an album of %d parts", len(album.parts))
        await self.forward(current, message, album.first_seq)

        def drop(latest: state.ConversationState | None) -> state.ConversationState:
            assert latest is not None
            if latest.album is None or latest.album.first_seq != album.first_seq:
                return latest
            return msgspec.structs.replace(latest, album=None)

        await store.change(self.store, current.conversation_id, drop)

    # Ending a conversation (SPEC §2.1).

    async def end_chat(self, chat: Chat, in_seq: int) -> None:
        """A rejected chat: its conversation (and the topic's, when it asked from one) ends."""
        await self.end(chat_conversation(chat), in_seq)
        if chat.conversation_id != chat_conversation(chat):
            await self.end(chat.conversation_id, in_seq)

    async def end(self, conv: str, in_seq: int) -> None:
        """Running work is cancelled and the workspace moved aside; the next authorized
        message starts a fresh conversation."""
        current, _ = await store.load(self.conn, self.store.kv, conv)
        if current is None or current.removed:
            return
        settings = self.settings_of(current)
        await store.change(self.store, conv, lambda latest: state.removed(latest or current))
        cancel = CancelTurn(
            session_id=current.foreground, input_seq=in_seq, chat=current.chat, reason="removed"
        )
        await self.send(cancel)
        ending = EndWork(conversation_id=current.chat.conversation_id, removed=True)
        ending = msgspec.structs.replace(ending, workspace=settings.workspace)
        await self.conn.nc.publish(subjects.tool_end(conv), bus.encode(ending))
        log.warning("conversation %s ended; its workspace is moved aside", conv)

    async def notes(self, notes: list[access.Note], in_seq: int) -> None:
        for index, note in enumerate(notes):
            out_id = OutId(f"{subjects.reply_out_id(in_seq)}n{index}")
            await self.say(note.chat, out_id, note.text, note.buttons)

    async def say(self, chat: Chat, out_id: OutId, text: str, buttons: list[list[Button]]) -> None:
        answer = SendReply(chat=chat, out_id=out_id, text=text, buttons=buttons)
        subject = subjects.outbound(chat.channel, chat.conversation_id)
        await bus.publish(self.conn, subject, answer, msg_id=out_id)


def has_content(message: MessageReceived) -> bool:
    """Anything left to take in: text, or a file that arrived (SPEC §12.3)."""
    return bool(message.text.strip()) or any(not file.error for file in message.attachments)


class Arrival:
    """How one message changes the conversation state: created or restarted, the model checked,
    an album before it set aside to go first, its own album part kept, `/new` applied."""

    def __init__(self, message: MessageReceived, in_seq: int, config: Config, *, is_new: bool):
        self.message = message
        self.in_seq = in_seq
        self.config = config
        self.is_new = is_new
        self.now = datetime.now(UTC)
        self.previous_model: list[str] = []
        self.waiting: list[albums.Album] = []

    def apply(self, current: state.ConversationState | None) -> state.ConversationState:
        message, now = self.message, self.now
        title = message.sender.display_name
        if current is None:
            current = state.new_state(message.chat, title, self.config.default_model, now)
        elif current.removed:
            current = state.restarted(current, message.chat, title, now)
        elif current.model not in self.config.models:  # the model left the config
            self.previous_model[:] = [current.model]
            current = state.with_model(current, self.config.default_model)
        current = state.received(current, message.chat, now)
        album = current.album
        self.waiting.clear()
        if album is not None and (album.sealed or album.group != message.media_group_id):
            self.waiting.append(album)  # an album before this message goes first
            album = None
        if message.media_group_id:
            album = albums.with_part(album, message, self.in_seq, now)
        current = msgspec.structs.replace(current, album=album)
        if self.is_new:
            current = state.with_new_session(current, self.in_seq)
        return current
