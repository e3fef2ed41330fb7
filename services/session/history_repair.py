"""History as the model must see it: every tool call answered before anything else (SPEC §3.10).

A turn cut short between an assistant's tool calls and their results (a crash, a failed append)
leaves calls without results; providers refuse such a history, so every later turn would fail.
`closed()` answers each such call with an error result, in the view sent to the model only.
"""

from collections.abc import Sequence

import msgspec

from shared.messages.history import AssistantMessage, HistoryEvent, ToolResult, ToolResults

UNANSWERED = msgspec.json.encode(
    {
        "error": "no result was recorded: the turn was interrupted before this call finished",
        "error_kind": "interrupted_by_restart",
    }
).decode()


def closed(events: Sequence[HistoryEvent]) -> list[HistoryEvent]:
    """The events with an error ToolResults after every AssistantMessage whose calls lack one."""
    repaired: list[HistoryEvent] = []
    pending: AssistantMessage | None = None
    for event in events:
        if isinstance(event, ToolResults):
            pending = None
        elif pending is not None:
            repaired.append(_unanswered(pending))
            pending = None
        if isinstance(event, AssistantMessage) and event.tool_calls:
            pending = event
        repaired.append(event)
    if pending is not None:
        repaired.append(_unanswered(pending))
    return repaired


def _unanswered(assistant: AssistantMessage) -> ToolResults:
    results = [
        ToolResult(call_id=call.call_id, tool=call.name, content=UNANSWERED, is_error=True)
        for call in assistant.tool_calls
    ]
    return ToolResults(turn_id=assistant.turn_id, results=results)
