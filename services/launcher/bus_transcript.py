"""`stellaclaw bus replay SC_HIST --session S`: a session's whole history as a transcript.

Each event as SC_HIST stores it, oldest first: who said what, the model's tool calls and their
results, how each turn ended and every compaction. Texts show in full, indented, with `--content`;
otherwise as their sizes, like every other view of the bus.
"""

from collections.abc import Iterator
from typing import assert_never

import msgspec

from services.launcher.bus_summaries import tokens
from shared.messages.history import (
    HISTORY,
    AssistantMessage,
    Compacted,
    HistoryEvent,
    Notice,
    SessionStarted,
    ToolResults,
    TurnFinished,
    TurnStarted,
    UserMessage,
)

INDENT = "    "


def block(body: str, content: bool) -> list[str]:
    """A text under its heading: indented in full, or its size on one line."""
    if not content:
        return [f"{INDENT}({len(body)} chars)"]
    return [INDENT + line for line in body.splitlines() or [""]]


def entry(seq: int, stamp: str, data: bytes, content: bool) -> list[str]:
    """The transcript lines of one stored event (`#seq time …`)."""
    try:
        event = HISTORY.decode(data)
    except msgspec.DecodeError as exc:
        return [f"#{seq} {stamp} undecodable: {exc}"]
    head = f"#{seq} {stamp}"
    return list(_lines(head, event, content))


def _lines(head: str, event: HistoryEvent, content: bool) -> Iterator[str]:
    match event:
        case SessionStarted():
            yield f"{head} session {event.session_id}: {event.session_type}, model {event.model}"
        case TurnStarted():
            again = f", continuing {event.continues}" if event.continues else ""
            yield ""
            yield f"{head} turn {event.turn_id} (input #{event.input_seq}{again})"
        case UserMessage():
            files = f" [{len(event.attachments)} files]" if event.attachments else ""
            yield f"{head} {event.sender.display_name}:{files}"
            yield from block(event.text, content)
        case Notice():
            yield f"{head} notice {event.tag}:"
            yield from block(event.text, content)
        case AssistantMessage():
            yield from _assistant(head, event, content)
        case ToolResults():
            for result in event.results:
                outcome = "failed" if result.is_error else "ok"
                yield f"{head} result {result.tool} {result.call_id}: {outcome}"
                yield from block(result.content, content)
        case TurnFinished():
            error = f" ({event.error})" if event.error else ""
            yield f"{head} turn {event.turn_id} {event.outcome}{error}; {tokens(event.usage)}"
        case Compacted():
            yield (
                f"{head} compaction {event.number} ({event.reason}): "
                f"{event.tokens_before:,} → {event.tokens_after:,} tokens; summary:"
            )
            yield from block(event.summary, content)
        case unhandled:
            assert_never(unhandled)


def _assistant(head: str, event: AssistantMessage, content: bool) -> Iterator[str]:
    yield f"{head} assistant ({event.model}, {tokens(event.usage)}):"
    if event.text or not event.tool_calls:
        yield from block(event.text, content)
    for call in event.tool_calls:
        arguments = call.arguments if content else f"{len(call.arguments)} chars"
        yield f"{INDENT}→ {call.name} {call.call_id}: {arguments}"
