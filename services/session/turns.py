"""One turn of a session actor, from its input to its end (SPEC §3.2 to 3.9).

A turn starts from a user message or a `/continue`, or is resumed by a new owner after a crash
(from its journal and history, collecting the tool calls of a cut batch through the ledger). It
folds follow-ups in at safe boundaries, stops at once on `/cancel`, and ends by publishing one
answer (its out id is the turn's, so delivery sends it once) and a TurnFinished.
"""

import asyncio
import logging
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import msgspec

from services.session import (
    answers,
    endings,
    failures,
    follow_ups,
    history_store,
    progress,
    prompt,
    turn_loop,
    turn_setup,
)
from services.session import usage as usages
from services.session.heads import Journal
from services.session.inbox import Entry
from services.session.turn_setup import Plan
from shared import bus, subjects
from shared.ids import TurnId
from shared.messages.contract import Chat
from shared.messages.events import TurnEnded
from shared.messages.history import (
    AssistantMessage,
    Compacted,
    Notice,
    SessionStarted,
    TurnFinished,
    TurnStarted,
    UserMessage,
)
from shared.messages.outbound import SendReply, ShowTyping
from shared.messages.session import CancelTurn, ContinueTurn, ConversationSettings, HandleMessage
from shared.messages.tools import ToolCatalog

if TYPE_CHECKING:
    from services.session.actor import SessionActor

MAX_TAKEOVERS = 3  # SPEC §3.8 `restarts`
log = logging.getLogger(__name__)


async def start(actor: "SessionActor", entry: Entry, message: HandleMessage) -> None:
    """A new turn for a user message."""
    history = actor.history
    turn_id, number = _next_turn(actor)
    chat = message.message.chat
    typing = ShowTyping(chat=chat, out_id=subjects.typing_out_id(turn_id), turn_id=turn_id)
    actor.acknowledged.add(message.input_seq)  # the turn's own message is no follow-up
    actor.begin_running(turn_id)

    async def record() -> ToolCatalog | None:
        tools = await actor.pool.tools(message.settings)
        user = await follow_ups.started(actor, turn_id, message)  # before the model sees it
        line = "" if tools is None else _sandbox_line(actor, message.settings, tools)
        if not history.events:
            await history.append(_session_started(actor, message.settings, line))
        await history.append(TurnStarted(turn_id=turn_id, input_seq=message.input_seq))
        if line and line != prompt.current_sandbox(history.events):
            update = prompt.sandbox_update(line)
            notice = Notice(turn_id=turn_id, tag=prompt.SANDBOX_TAG, text=update, sandbox=line)
            await history.append(notice)
        await history.append(user)
        actor.inbox.done(entry)
        actor.next_journal = actor.journal_for(turn_id, chat, message.settings, takeovers=0)
        return tools

    outbound = subjects.outbound(chat.channel, chat.conversation_id)
    _, tools = await together(
        bus.publish(actor.conn, outbound, typing, msg_id=typing.out_id), record()
    )
    plan = Plan(turn_id=turn_id, number=number, chat=chat, settings=message.settings)
    await drive(actor, plan, tools)


def _session_started(
    actor: "SessionActor", settings: ConversationSettings, sandbox: str
) -> SessionStarted:
    return SessionStarted(
        session_id=actor.session_id,
        session_type=actor.held.head.session_type,
        model=settings.model,
        sandbox=sandbox,
    )


def _sandbox_line(actor: "SessionActor", settings: ConversationSettings, tools: ToolCatalog) -> str:
    """The environment line of command isolation and remote mode (announced when it changes)."""
    config = actor.pool.config
    remote = prompt.remote_part(settings.remote, config.remotes)
    if settings.remote.mode == "fixed" and remote:  # the remote account is the boundary there
        return "sandbox: none on the remote: commands run as its SSH account" + remote
    return prompt.sandbox_line(settings.sandbox, tools.sandbox, config.sandbox) + remote


async def together(*work: Awaitable[Any]) -> list[Any]:
    """Run the work concurrently; the first error is raised as it is (a bus error stays a bus
    error for the actor's retry), the rest of the work cancelled."""
    tasks = [asyncio.ensure_future(w) for w in work]
    try:
        return await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def continue_turn(actor: "SessionActor", entry: Entry, message: ContinueTurn) -> None:
    """`/continue`: a fresh turn on the stored history, no new user input, a fresh budget."""
    last = last_finished(actor)
    chat = message.chat
    if last is None or last.outcome != "failed" or not last.can_continue:
        await reply(actor, chat, message.input_seq, failures.NOTHING_TO_CONTINUE)
        actor.inbox.done(entry)
        return
    await reply(actor, chat, message.input_seq, failures.CONTINUING)
    turn_id, number = _next_turn(actor)
    actor.inbox.done(entry)  # before the turn runs: it is not a control of this turn
    actor.begin_running(turn_id, settles=0)  # `▶️ Continuing…` answered the input
    started = TurnStarted(turn_id=turn_id, input_seq=message.input_seq, continues=last.turn_id)
    await actor.history.append(started)
    actor.next_journal = actor.journal_for(turn_id, chat, message.settings, takeovers=0)
    tools = await actor.pool.tools(message.settings)
    plan = Plan(turn_id=turn_id, number=number, chat=chat, settings=message.settings)
    await drive(actor, plan, tools)


async def resume(actor: "SessionActor", opened: TurnStarted, number: int) -> None:
    """Take over a turn its owner left open (SPEC §3.9)."""
    turn_id = opened.turn_id
    journal = actor.held.head.journal
    if journal is not None and journal.turn_id != turn_id:
        journal = None
    where = await _where(actor, opened, journal)
    if where is None:
        log.error("turn %s was left open and its input is gone; ending it", turn_id)
        finished = TurnFinished(turn_id=turn_id, outcome="failed", error="internal")
        await actor.history.append(finished)
        return
    chat, settings = where
    takeovers = 0 if journal is None else journal.takeovers
    if journal is None or not journal.handed_over:
        takeovers += 1
    log.warning("resuming turn %s (takeover %d)", turn_id, takeovers)
    actor.begin_running(turn_id)
    resumed = actor.journal_for(turn_id, chat, settings, takeovers=takeovers)
    if journal is not None and journal.started_at is not None:  # the panel's time goes on
        resumed = msgspec.structs.replace(resumed, started_at=journal.started_at)
    actor.next_journal = resumed
    await actor.write_journal(resumed)
    if takeovers >= MAX_TAKEOVERS:
        ending = turn_loop.Ending(
            text=failures.restarts(), outcome="failed", error="restarts", can_continue=True
        )
        shown = progress.for_turn(actor, turn_id, chat, settings.model, is_resumed=True)
        await shown.end(*endings.for_panel(ending))  # its panel, if it had one: interrupted
        await finish(actor, turn_id, chat, ending)
        return
    tools = await actor.pool.tools(settings)
    plan = Plan(
        turn_id=turn_id,
        number=number,
        chat=chat,
        settings=settings,
        ledger=journal.batch if journal is not None else [],
        attempt=takeovers,
        is_resumed=True,
    )
    await drive(actor, plan, tools)


async def _where(
    actor: "SessionActor", opened: TurnStarted, journal: Journal | None
) -> tuple[Chat, ConversationSettings] | None:
    """The chat and settings of an open turn: from its journal, else from its input (the owner
    died before it wrote the journal, so the input is still past the cursor)."""
    if journal is not None and journal.chat is not None and journal.settings is not None:
        return journal.chat, journal.settings
    for entry in actor.inbox.waiting():
        found = entry.input
        if isinstance(found, HandleMessage | ContinueTurn) and found.input_seq == opened.input_seq:
            actor.inbox.done(entry)
            if isinstance(found, HandleMessage):
                await _record_message(actor, opened.turn_id, found)
                return found.message.chat, found.settings
            return found.chat, found.settings
    return None


async def _record_message(actor: "SessionActor", turn_id: TurnId, message: HandleMessage) -> None:
    """The user's message of a turn whose owner died right after starting it (before the
    message was stored): the model must be sent it."""
    has_it = any(
        isinstance(e, UserMessage) and e.turn_id == turn_id and not e.follow_ups
        for e in actor.history.events
    )
    if not has_it:
        await actor.history.append(await follow_ups.started(actor, turn_id, message))


async def drive(actor: "SessionActor", plan: Plan, tools: ToolCatalog | None) -> None:
    """Run the turn to its end, whichever way it ends."""
    started_at = asyncio.get_running_loop().time()
    model = turn_setup.model_of(actor, plan)
    shown = progress.for_turn(actor, plan.turn_id, plan.chat, model, is_resumed=plan.is_resumed)
    try:
        answered = _answer_of(actor, plan.turn_id)
        if answered is not None:  # the answer is stored: its delivery was cut
            ending = answered
        elif tools is None:
            text = failures.tools_unavailable(plan.settings.workspace.pool)
            ending = turn_loop.Ending(text=text, outcome="failed", error="tools", can_continue=True)
        else:
            turn = turn_setup.turn_of(actor, plan, shown)
            ending = await endings.ending(actor, turn, tools.tools, plan.ledger)
        await shown.end(*endings.for_panel(ending))  # before the answer: no draft follows it
    finally:
        shown.stop()
    if ending.outcome == "cancelled":
        await cancelled(actor, plan.turn_id, plan.chat)
    else:
        await finish(actor, plan.turn_id, plan.chat, ending)
    await usages.report(actor.conn, plan.chat, actor.session_id, plan.turn_id, actor.history.events)
    elapsed_s = asyncio.get_running_loop().time() - started_at
    await _tell_ended(actor, plan, ending.outcome, elapsed_s)
    log.info("turn %s %s in %.2f s", plan.turn_id, ending.outcome, elapsed_s)


async def _tell_ended(actor: "SessionActor", plan: Plan, outcome: str, elapsed_s: float) -> None:
    """The turn's end and duration for metrics, published without waiting for the ack (like its
    usage facts: a lost one costs a sample; a redone end is dropped by its msg id)."""
    told: Literal["answered", "cancelled", "failed"] = (
        "answered" if outcome == "answered" else "cancelled" if outcome == "cancelled" else "failed"
    )
    fact = TurnEnded(
        conversation_id=plan.chat.conversation_id,
        session_id=actor.session_id,
        turn_id=plan.turn_id,
        outcome=told,
        duration_s=round(elapsed_s, 3),
        at=datetime.now(UTC),
    )
    once = {subjects.MSG_ID_HEADER: subjects.turn_ended_msg_id(plan.turn_id)}
    subject = subjects.turn_event(plan.chat.conversation_id)
    await actor.conn.nc.publish(subject, bus.encode(fact), headers=once)


async def finish(
    actor: "SessionActor", turn_id: TurnId, chat: Chat, ending: turn_loop.Ending
) -> None:
    """Publish the answer (or the failure text), then record the turn's end."""
    await actor.ensure_lease()
    answer = SendReply(
        chat=chat,
        out_id=subjects.answer_out_id(turn_id),
        text=ending.text,
        turn_id=turn_id,
        is_failure=ending.outcome != "answered",
        settles=actor.running.settles if actor.running is not None else 1,
    )
    await answers.publish(actor.conn, answer)
    await actor.history.append(
        TurnFinished(
            turn_id=turn_id,
            outcome="answered" if ending.outcome == "answered" else "failed",
            error=ending.error,
            can_continue=ending.can_continue,
            usage=usages.of_history(actor.history.events, turn_id),
        )
    )


async def cancelled(actor: "SessionActor", turn_id: TurnId, chat: Chat) -> None:
    """Record the cancellation and the messages queued before it, then confirm (SPEC §3.6)."""
    await actor.ensure_lease()
    running = actor.running
    assert running is not None
    cancel_entry = actor.cancel_entry
    queued = [
        e for e in actor.inbox.follow_ups() if cancel_entry is None or e.seq < cancel_entry.seq
    ]
    await actor.history.append(
        Notice(turn_id=turn_id, tag="Cancelled", text=failures.CANCELLED_NOTICE)
    )
    if queued:
        await actor.history.append(await follow_ups.taken_in(actor, turn_id, queued, tag=False))
    await actor.history.append(
        TurnFinished(
            turn_id=turn_id,
            outcome="cancelled",
            cancel_seq=running.cancel_seq,
            usage=usages.of_history(actor.history.events, turn_id),
        )
    )
    for entry in queued:
        actor.inbox.done(entry)
    cancel = cancel_entry.input if cancel_entry is not None else None
    if cancel_entry is not None:
        actor.inbox.done(cancel_entry)
    everything = isinstance(cancel, CancelTurn) and cancel.everything
    by_command = isinstance(cancel, CancelTurn) and cancel.reason == "cancel"
    text = failures.cancelled(len(queued), everything=everything)
    out = SendReply(
        chat=chat,
        out_id=subjects.answer_out_id(turn_id),
        text=text,
        turn_id=turn_id,
        settles=running.settles + len(queued) + by_command,  # /new answered itself
    )
    await answers.publish(actor.conn, out)


async def reply(actor: "SessionActor", chat: Chat, input_seq: int, text: str) -> None:
    """A short reply to a control input (its out id is the input's: sent once)."""
    out = SendReply(chat=chat, out_id=subjects.reply_out_id(input_seq), text=text)
    await answers.publish(actor.conn, out)


def _next_turn(actor: "SessionActor") -> tuple[TurnId, int]:
    number = 1 + history_store.turns_started(actor.history.events)
    return TurnId(f"{actor.session_id}_t{number}"), number


def open_turn(actor: "SessionActor") -> tuple[TurnStarted, int] | None:
    """The last turn started and not finished (its owner was cut), and its number."""
    opened: TurnStarted | None = None
    number = 0
    first = actor.history.events[0] if actor.history.events else None
    if isinstance(first, Compacted):  # the turn running then may have been folded in
        opened, number = first.opened, first.turns
    for event in actor.history.events:
        if isinstance(event, TurnStarted):
            opened, number = event, number + 1
        elif isinstance(event, TurnFinished) and opened and event.turn_id == opened.turn_id:
            opened = None
    return (opened, number) if opened is not None else None


def last_finished(actor: "SessionActor") -> TurnFinished | None:
    for event in reversed(actor.history.events):
        if isinstance(event, TurnFinished):
            return event
    return None


def _answer_of(actor: "SessionActor", turn_id: TurnId) -> turn_loop.Ending | None:
    """The final answer a cut turn had already received (its delivery was cut), if any."""
    events = actor.history.events
    last = events[-1] if events else None
    if isinstance(last, AssistantMessage) and last.turn_id == turn_id and not last.tool_calls:
        return turn_loop.Ending(text=last.text)
    return None
