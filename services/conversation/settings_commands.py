"""The commands that read or change one conversation's settings or steer its session (SPEC
§12.4): `/status`, `/model`, `/reasoning`, `/sandbox`, `/remote`, `/cancel`, `/continue`,
`/compact`; and how inputs reach a session (stored, then a nudge or a wake)."""

import asyncio
import logging
import time

import nats.errors
from nats.errors import NoRespondersError

from services.conversation import (
    asking,
    commands,
    model_command,
    remote_command,
    sandbox_command,
    state,
    store,
    usage_totals,
)
from shared import bus, subjects
from shared.config import Config
from shared.ids import OutId, SessionId
from shared.messages.contract import Sender
from shared.messages.outbound import Button, SendReply
from shared.messages.session import (
    NUDGE_TAKEN,
    CancelTurn,
    CompactSession,
    ContinueTurn,
    ConversationSettings,
    NudgeSession,
    SessionInput,
)
from shared.messages.tools import ProbePool
from shared.sandbox import MODES
from shared.tools_config import remote_pool

NUDGE_TIMEOUT_S = 0.5  # a live session answers in a millisecond; else the wake is the way
REMOTE_PROBE_S = 12.0  # the runner connects (≤ 10 s, SPEC §6.6) and checks the path
STEERING = ("cancel", "continue", "compact")
log = logging.getLogger(__name__)


class SettingsCommands:
    """The part of the router that answers settings commands and sends session inputs."""

    def __init__(self, conn: bus.Connection, where: store.Store, config: Config) -> None:
        self.conn = conn
        self.store = where
        self.config = config

    async def admins(self) -> frozenset[int]:
        """The Telegram admins: the config's (the router adds those recorded in sc_auth)."""
        telegram = self.config.telegram
        return frozenset(telegram.admin_user_ids if telegram else ())

    def settings_of(self, current: state.ConversationState) -> ConversationSettings:
        return state.settings(current, self.config.sandbox.mode, self.config.remotes)

    async def settings_command(
        self,
        command: commands.Command,
        current: state.ConversationState,
        in_seq: int,
        sender: Sender,
    ) -> bool:
        """Run `command` if it is one of these; False when it is not."""
        if command.name in STEERING:
            await self.steer(command, current, in_seq)
            return True
        match command.name:
            case "status":
                await self.status(current, in_seq)
            case "model":
                await self.model(command.argument, current, in_seq)
            case "reasoning":
                await self.reasoning(command.argument, current, in_seq)
            case "sandbox":
                await self.sandbox(command.argument, current, in_seq, sender)
            case "remote":
                await self.remote(command.argument, current, in_seq)
            case _:
                return False
        return True

    async def steer(
        self, command: commands.Command, current: state.ConversationState, in_seq: int
    ) -> None:
        """Cancel, continue and compact go to the session, which alone knows what runs."""
        session, chat = current.foreground, current.chat
        match command.name:
            case "cancel":
                everything = commands.cancels_everything(command)
                if everything is None:
                    await self.reply(current, in_seq, commands.CANCEL_USAGE)
                    return
                await self.send(
                    CancelTurn(
                        session_id=session, input_seq=in_seq, chat=chat, everything=everything
                    )
                )
            case "continue":
                settings = self.settings_of(current)
                await self.send(
                    ContinueTurn(session_id=session, input_seq=in_seq, chat=chat, settings=settings)
                )
            case _:
                settings = self.settings_of(current)
                await self.send(
                    CompactSession(
                        session_id=session, input_seq=in_seq, chat=chat, settings=settings
                    )
                )

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
        answer, support, last_day, held = await asyncio.gather(
            asking.session_status(self.conn, current.foreground),
            asking.probe(self.conn, current.workspace.pool),
            usage_totals.last_day(self.conn, current.conversation_id),
            asking.held(self.conn, self.settings_of(current).workspace),
        )
        extra = commands.Extras(last_day=last_day, held=held, now=time.time())
        text = commands.status(current, self.config, answer, support, extra)
        await self.reply(current, in_seq, text)

    async def model(self, argument: str, current: state.ConversationState, in_seq: int) -> None:
        """`/model [name]`: a switch is stored by CAS before the reply; a running turn
        finishes with the model it started with."""
        outcome = model_command.model(argument, current, self.config)
        if isinstance(outcome, str):
            await self.reply(current, in_seq, outcome)
            return
        if isinstance(outcome, model_command.Shown):
            await self.reply(current, in_seq, outcome.text, buttons=outcome.buttons)
            return
        chosen = outcome.model
        current = await self.stored(current, lambda c: state.with_model(c, chosen))
        answer = await asking.session_status(self.conn, current.foreground)
        running = answer is not None and answer.state == "running"
        text = outcome.text + (model_command.still_running(outcome.previous) if running else "")
        await self.reply(current, in_seq, text)

    async def reasoning(self, argument: str, current: state.ConversationState, in_seq: int) -> None:
        outcome = model_command.reasoning(argument, current, self.config)
        if isinstance(outcome, str):
            await self.reply(current, in_seq, outcome)
            return
        effort = outcome.effort
        await self.change(current, in_seq, lambda c: state.with_reasoning(c, effort), outcome.text)

    async def sandbox(
        self, argument: str, current: state.ConversationState, in_seq: int, sender: Sender
    ) -> None:
        """`/sandbox [mode]`: a change is stored by CAS before the reply, so the next input
        (and with it the next tool call) carries it."""
        support = await asking.probe(self.conn, current.workspace.pool)
        admin = sandbox_command.is_admin(current.chat, sender, await self.admins())
        outcome = sandbox_command.answer(argument, current, self.config, support, admin)
        if isinstance(outcome, str):
            buttons = [] if argument else sandbox_buttons()
            await self.reply(current, in_seq, outcome, buttons=buttons)
            return
        mode = outcome.mode
        await self.change(current, in_seq, lambda c: state.with_sandbox(c, mode), outcome.text)

    async def remote(self, argument: str, current: state.ConversationState, in_seq: int) -> None:
        """`/remote [name [path] | select | off]`: a fixed remote is checked through its pool's
        probe first; a change is stored by CAS before the reply (it applies from the next turn)."""
        outcome = remote_command.answer(argument, current, self.config.remotes)
        if isinstance(outcome, remote_command.CheckFirst):
            asked = ProbePool(remote=outcome.name, path=outcome.path)
            pool = remote_pool(outcome.name)
            probed = await asking.pool_probe(self.conn, pool, asked, REMOTE_PROBE_S)
            error = "no tool runner serves it" if probed is None else probed.remote_error or None
            outcome = remote_command.fixed(outcome, error)
        if isinstance(outcome, str):
            buttons = [] if argument else remote_buttons(list(self.config.remotes))
            await self.reply(current, in_seq, outcome, buttons=buttons)
            return
        remote = outcome.remote
        await self.change(current, in_seq, lambda c: state.with_remote(c, remote), outcome.text)

    async def stored(
        self, current: state.ConversationState, change: store.Apply
    ) -> state.ConversationState:
        """The conversation with `change` stored by CAS (on the newest state)."""
        return await store.change(
            self.store, current.conversation_id, lambda latest: change(latest or current)
        )

    async def change(
        self, current: state.ConversationState, in_seq: int, change: store.Apply, text: str
    ) -> None:
        """Store `change`, then reply `text`: the next input carries the new setting."""
        await self.reply(await self.stored(current, change), in_seq, text)

    async def reply(
        self,
        current: state.ConversationState,
        in_seq: int,
        text: str,
        *,
        suffix: str = "",
        buttons: list[list[Button]] | None = None,
    ) -> None:
        out_id = OutId(subjects.reply_out_id(in_seq) + suffix)
        answer = SendReply(chat=current.chat, out_id=out_id, text=text, buttons=buttons or [])
        subject = subjects.outbound(current.chat.channel, current.conversation_id)
        await bus.publish(self.conn, subject, answer, msg_id=out_id)


def sandbox_buttons() -> list[list[Button]]:
    """`/sandbox`'s choices (SPEC §12.4)."""
    names = [*MODES, "default"]
    return [[Button(text=name, data=f"/sandbox {name}") for name in names]]


def remote_buttons(remotes: list[str]) -> list[list[Button]]:
    """`/remote`'s choices: each configured remote, `select` and `off` (none when none exist)."""
    if not remotes:
        return []
    names = [*remotes, "select", "off"]
    return [[Button(text=name, data=f"/remote {name}") for name in names]]
