"""The tool-call ledger of a takeover (SPEC §3.9): a batch its last owner sent and did not see
through.

For each call of the cut batch: a result stored in SC_TOOLRES is taken as it is; a call a runner
has started (its ToolStarted is the last event) is waited for until its announced limit; a call
never sent (not journaled `sent`) is sent now; an unfinished call journaled `sent` is sent again
only if its tool is idempotent, otherwise the model is told it was not re-run.
"""

from collections.abc import Sequence
from typing import TYPE_CHECKING

import msgspec
from nats.js.errors import NotFoundError

from services.session import tool_batch, turn_loop
from services.session.heads import CallEntry
from shared import bus, subjects
from shared.ids import ToolCallId
from shared.messages.history import AssistantMessage, ToolCall, ToolResult, ToolResults
from shared.messages.tools import TOOL_EVENT, ToolEvent, ToolFinished, ToolSpec, ToolStarted

if TYPE_CHECKING:
    from services.session.actor import SessionActor

NOT_RE_RUN = msgspec.json.encode(
    {
        "error": "interrupted by a restart; not re-run. Check its effects before repeating it.",
        "interrupted_by_restart": True,
    }
).decode()


async def settle(
    actor: "SessionActor",
    turn: turn_loop.Turn,
    tools: list[ToolSpec],
    journaled: Sequence[CallEntry],
) -> None:
    """Store the results of the turn's cut batch, if it has one."""
    events = turn.history.events
    last = events[-1] if events else None
    if not isinstance(last, AssistantMessage) or not last.tool_calls:
        return
    if last.turn_id != turn.turn_id:
        return
    await turn.results.open()  # before looking: a result stored from now on is seen
    done, to_run = await _classify(actor, turn, last.tool_calls, journaled)
    if to_run:
        traits = {spec.name: spec.traits for spec in tools}
        how = tool_batch.Run(
            results=turn.results,
            traits=traits,
            cancel=turn.running.cancel,
            journal=turn.journal,
            started=dict(turn.started),
            attempt=turn.attempt,
        )
        for result in await tool_batch.run(turn.batch, to_run, how):
            done[result.call_id] = result
    turn.started.clear()
    ordered = [done[call.call_id] for call in last.tool_calls]
    await turn.offer(ordered)
    fitted = tool_batch.fitted(ordered)
    await turn.history.append(ToolResults(turn_id=turn.turn_id, results=fitted))
    if turn.running.cancel.is_set():
        raise tool_batch.TurnCancelledError


async def _classify(
    actor: "SessionActor",
    turn: turn_loop.Turn,
    calls: list[ToolCall],
    journaled: Sequence[CallEntry],
) -> tuple[dict[ToolCallId, ToolResult], list[ToolCall]]:
    """The calls' results known now, and the calls to run (or wait for) still."""
    sent = {entry.call_id: entry for entry in journaled}
    done: dict[ToolCallId, ToolResult] = {}
    to_run: list[ToolCall] = []
    for call in calls:
        found = await last_event(actor.conn, actor.session_id, call.call_id)
        journal = sent.get(call.call_id)
        match found:
            case ToolFinished():
                done[call.call_id] = tool_batch.as_result(call, found)
            case ToolStarted(limit_s=limit_s):
                turn.started[call.call_id] = limit_s
                to_run.append(call)
            case None if journal is None or journal.idempotent:
                to_run.append(call)  # never sent, or safe to run twice
            case None:
                done[call.call_id] = not_re_run(call)
    return done, to_run


def not_re_run(call: ToolCall) -> ToolResult:
    return ToolResult(call_id=call.call_id, tool=call.name, content=NOT_RE_RUN, is_error=True)


async def last_event(conn: bus.Connection, session_id: str, call_id: str) -> ToolEvent | None:
    """The last start or result stored for the call, if any."""
    subject = subjects.tool_result(session_id, call_id)
    try:
        stored = await conn.js.get_last_msg(subjects.TOOL_RESULT_STREAM, subject)
    except NotFoundError:
        return None
    return await bus.decoded(conn, TOOL_EVENT, stored.data or b"", subject, stored.seq or 0)
