"""Follow-ups (SPEC §3.5): messages that come while a turn runs are acknowledged at once (👀)
and taken into the turn at its next safe boundary, one user message for all of them."""

import asyncio
import contextlib
import logging
from datetime import UTC
from typing import TYPE_CHECKING

import nats.errors

from services.session import placing
from services.session.inbox import Entry
from shared import bus, subjects
from shared.ids import ToolCallId, TurnId
from shared.messages.history import UserMessage
from shared.messages.outbound import SetReaction
from shared.messages.session import HandleMessage
from shared.messages.tools import CancelCall

if TYPE_CHECKING:
    from services.session.actor import SessionActor

FOLLOW_UP_REACTION = "👀"
log = logging.getLogger(__name__)


async def fold(actor: "SessionActor", turn_id: TurnId) -> None:
    """Take the follow-ups waiting into the turn (SPEC §3.5), one user message for all."""
    entries = actor.inbox.follow_ups()
    if not entries:
        return
    await actor.history.append(await taken_in(actor, turn_id, entries, tag=True))
    for entry in entries:
        actor.inbox.done(entry)
    if actor.running is not None:
        actor.running.settles += len(entries)
    shown_waiting(actor)
    log.info("folded %d follow-up(s) into turn %s", len(entries), turn_id)


async def started(actor: "SessionActor", turn_id: TurnId, message: HandleMessage) -> UserMessage:
    """The turn's message as history keeps it, its files placed in the workspace first."""
    return await placing.placed(actor.conn, user_message(turn_id, message), message)


async def taken_in(
    actor: "SessionActor", turn_id: TurnId, entries: list[Entry], *, tag: bool
) -> UserMessage:
    """Follow-ups as one message for history, their files placed in the workspace first."""
    newest = [e.input for e in entries if isinstance(e.input, HandleMessage)][-1]
    return await placing.placed(actor.conn, folded(turn_id, entries, tag=tag), newest)


def user_message(turn_id: TurnId, message: HandleMessage) -> UserMessage:
    """The message that starts a turn, as history keeps it (its files by reference)."""
    received = message.message
    return UserMessage(
        turn_id=turn_id,
        text=received.text,
        sender=received.sender,
        attachments=received.attachments,
    )


def folded(turn_id: TurnId, entries: list[Entry], *, tag: bool) -> UserMessage:
    messages = [e.input for e in entries if isinstance(e.input, HandleMessage)]
    seqs = [m.input_seq for m in messages]
    if len(messages) == 1:
        text = messages[0].message.text
        if tag:
            text = "[Interrupted Follow-up]\n" + text
    else:
        parts = ["[Queued User Updates]"]
        for n, message in enumerate(messages, 1):
            at = message.message.received_at.astimezone(UTC).strftime("%H:%M:%S")
            parts.append(f"--- update {n} of {len(messages)} ({at}) ---")
            parts.append(message.message.text)
        text = "\n".join(parts)
    return UserMessage(
        turn_id=turn_id,
        text=text,
        sender=messages[0].message.sender,
        follow_ups=seqs,
        attachments=[a for m in messages for a in m.message.attachments],  # all of them
    )


async def acknowledge(actor: "SessionActor", message: HandleMessage) -> None:
    """👀 on a follow-up read during a turn (SPEC §3.5, §12.5): it is taken in at the next step.
    A Telegram message has it already: ingress sets the ack reaction on every message it takes."""
    shown_waiting(actor)
    received = message.message
    if received.chat.channel == "telegram":
        return
    reaction = SetReaction(
        chat=received.chat,
        out_id=subjects.reaction_out_id(message.input_seq),
        message_id=received.platform_message_id or 0,
        emoji=FOLLOW_UP_REACTION,
    )
    outbound = subjects.outbound(received.chat.channel, received.chat.conversation_id)
    with contextlib.suppress(TimeoutError, nats.errors.Error):
        await bus.publish(actor.conn, outbound, reaction, msg_id=reaction.out_id)


def shown_waiting(actor: "SessionActor") -> None:
    """The panel's `📥 <n> new message(s)` line: the follow-ups waiting for the next step."""
    running = actor.running
    if running is not None and running.progress is not None:
        running.progress.follow_ups(len(actor.inbox.follow_ups()))


CUT_TIMEOUT_S = 2.0


async def cut_waits(actor: "SessionActor", call_ids: list[ToolCallId]) -> None:
    """A follow-up came: the interruptible calls in flight stop waiting (SPEC §5.0) and return
    what they have, so the follow-up is taken in at the next boundary; their work goes on."""

    async def cut(call_id: ToolCallId) -> None:
        request = CancelCall(session_id=actor.session_id, call_id=call_id, wait_only=True)
        subject = subjects.tool_cancel(actor.session_id, call_id)
        with contextlib.suppress(TimeoutError, nats.errors.Error):  # finished meanwhile
            await actor.conn.nc.request(subject, bus.encode(request), timeout=CUT_TIMEOUT_S)

    await asyncio.gather(*(cut(call_id) for call_id in call_ids))
