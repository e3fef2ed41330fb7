"""The session's part of `/status` (SPEC §12.4), and the totals its head keeps for it.

A live actor answers from memory; for a session no actor holds, any session instance answers
from its head in `sc_session` (DESIGN §4), so no other service reads that bucket.
"""

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from services.session import context_window, history_store
from services.session import usage as usages
from services.session.heads import Held
from shared.ids import SessionId
from shared.messages.history import (
    Compacted,
    HistoryEvent,
    TurnFinished,
    TurnStarted,
)
from shared.messages.session import HandleMessage, SessionState, SessionStatus

if TYPE_CHECKING:
    from services.session.actor import SessionActor


def can_continue(events: Sequence[HistoryEvent]) -> bool:
    """Did the last turn end failed and recoverably (or get cut)?"""
    for event in reversed(events):
        if isinstance(event, TurnFinished):
            return event.outcome == "failed" and event.can_continue
        if isinstance(event, TurnStarted):
            return True  # started and never finished: cut
    return False


def of_actor(actor: "SessionActor") -> SessionStatus:
    events = actor.history.events
    head = actor.held.head
    running = actor.running
    state: SessionState = "failed" if can_continue(events) else "idle"
    activity, running_s, fallback = "", None, ""
    if head.broken:
        state = "broken"
    elif running is not None:
        state, activity, fallback = "running", running.activity, running.fallback
        running_s = asyncio.get_running_loop().time() - running.started_at
    return SessionStatus(
        session_id=actor.session_id,
        session_type=head.session_type,
        state=state,
        turns=history_store.turns_started(events),
        started_at=head.started_at,
        running_s=running_s,
        activity=activity,
        usage=usages.of_history(events),
        fallback=fallback,
        broken_reason=head.broken,
        waiting=sum(isinstance(entry.input, HandleMessage) for entry in actor.inbox.waiting()),
        **_context(actor),
    )


def _context(actor: "SessionActor") -> dict[str, Any]:
    """The estimate and the last compaction (SPEC §12.4's `Context` and `Last compaction`)."""
    config = actor.pool.config
    name, estimated = context_window.held_estimate(actor.history, config, actor.calibrations)
    first = actor.history.events[0] if actor.history.events else None
    compacted = first if isinstance(first, Compacted) else None
    sizes = (compacted.tokens_before, compacted.tokens_after) if compacted else None
    return {
        "context_tokens": estimated.tokens,
        "context_is_reported": estimated.is_reported,
        "context_model": name,
        "last_compaction": compacted.at if compacted else None,
        "compacted_tokens": sizes,
        "compaction_failure": actor.compaction_failure,
    }


def of_head(session_id: SessionId, held: Held) -> SessionStatus:
    """The status of a session no actor holds, from its head."""
    head = held.head
    if not held.revision:
        return SessionStatus(session_id=session_id, state="new")
    state: SessionState = "broken" if head.broken else "failed" if head.can_continue else "idle"
    activity = ""
    if head.journal is not None and not head.broken:
        state, activity = "running", "recovering"
    return SessionStatus(
        session_id=session_id,
        session_type=head.session_type,
        state=state,
        turns=head.turns,
        started_at=head.started_at,
        activity=activity,
        usage=head.usage,
        context_tokens=head.context_tokens,
        compaction_failure=head.compaction_failure,
        broken_reason=head.broken,
    )


def closing(actor: "SessionActor", *, handed_over: bool) -> dict[str, object]:
    """The head's changes when the actor lets the session go."""
    events = actor.history.events
    journal = actor.turn_journal()
    if journal is not None and handed_over:
        journal = msgspec.structs.replace(journal, handed_over=True)
    elif not handed_over:
        journal = None
    return {
        "cursor": actor.inbox.cursor,
        "journal": journal,
        "turns": history_store.turns_started(events),
        "usage": usages.of_history(events),
        "context_tokens": context_window.held_estimate(
            actor.history, actor.pool.config, actor.calibrations
        )[1].tokens,
        "history_from": actor.history.start_seq,
        "calibrations": actor.calibrations,
        "compaction_failure": actor.compaction_failure,
        "can_continue": can_continue(events),
    }
