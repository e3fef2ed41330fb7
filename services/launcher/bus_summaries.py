"""A short summary of each bus message, one function per subject family.

Content (what people wrote, answers, tool arguments and outputs, error texts from tools) is shown
only when asked (`--content`); otherwise its size. Ids, names, counts and outcomes always show.
"""

from typing import assert_never

import msgspec

from shared.messages.events import BadMessage, DeadLettered, Event, ModelUsed, ToolEnded, TurnEnded
from shared.messages.history import (
    AssistantMessage,
    Compacted,
    HistoryEvent,
    Notice,
    SessionStarted,
    ToolResults,
    TurnFinished,
    TurnStarted,
    Usage,
    UserMessage,
)
from shared.messages.inbound import AccessRequested, ChatRemoved, InboundMessage, MessageReceived
from shared.messages.outbound import (
    Output,
    SendFile,
    SendReply,
    SetReaction,
    ShowProgress,
    ShowTyping,
    StreamText,
)
from shared.messages.session import (
    CancelTurn,
    CompactSession,
    ContinueTurn,
    Control,
    HandleMessage,
    NudgeSession,
    SessionInput,
    StatusQuery,
    WakeSession,
)
from shared.messages.tools import (
    CancelCall,
    DirectRequest,
    EndWork,
    ListTools,
    PingRunner,
    PlaceFiles,
    ProbePool,
    RunTool,
    ToolEvent,
    ToolFailed,
    ToolFinished,
    ToolStarted,
    ToolSucceeded,
)


def text(value: str, content: bool) -> str:
    """The text on one line (JSON-quoted) with `content`, else its length."""
    return msgspec.json.encode(value).decode() if content else f"{len(value)} chars"


def raw(value: msgspec.Raw, content: bool) -> str:
    return bytes(value).decode("utf-8", "replace") if content else f"{len(value)} B"


def tokens(usage: Usage) -> str:
    return f"{usage.input:,} in / {usage.output:,} out tokens"


def inbound(message: InboundMessage, content: bool) -> str:
    match message:
        case MessageReceived():
            files = f", {len(message.attachments)} files" if message.attachments else ""
            return f"from {message.sender.display_name}: {text(message.text, content)}{files}"
        case AccessRequested():
            return f"from {message.sender.display_name}: access requested"
        case ChatRemoved():
            return f"the bot left {message.chat.conversation_id}"
        case unhandled:
            assert_never(unhandled)


def session_input(message: SessionInput, content: bool) -> str:
    match message:
        case HandleMessage():
            said = text(message.message.text, content)
            model = message.settings.model
            return f"input #{message.input_seq} ({model}): {said}"
        case CancelTurn():
            every = " all" if message.everything else ""
            return f"cancel{every} ({message.reason}), input #{message.input_seq}"
        case ContinueTurn() | CompactSession():
            return f"input #{message.input_seq}"
        case unhandled:
            assert_never(unhandled)


def wake(message: WakeSession, content: bool) -> str:
    return f"input #{message.seq}" if message.seq else "input: any"


def tool_request(message: RunTool, content: bool) -> str:
    return (
        f"{message.tool} {message.call_id} on {message.workspace.pool}: "
        f"{raw(message.arguments, content)}"
    )


def tool_event(message: ToolEvent, content: bool) -> str:
    match message:
        case ToolStarted():
            limit = f"limit {message.limit_s:g} s"
            return f"{message.tool} {message.call_id} on {message.runner_id}, {limit}"
        case ToolFinished():
            took = f"{message.tool} {message.call_id} in {message.duration_s:g} s"
            match message.result:
                case ToolSucceeded() as done:
                    return f"{took}: succeeded, {raw(done.output, content)}"
                case ToolFailed() as failed:
                    return f"{took}: {failed.error_kind}, {text(failed.error, content)}"
                case unhandled_result:
                    assert_never(unhandled_result)
        case unhandled:
            assert_never(unhandled)


def history(message: HistoryEvent, content: bool) -> str:
    match message:
        case SessionStarted():
            return f"{message.session_type} session, model {message.model}"
        case TurnStarted():
            again = f", continues {message.continues}" if message.continues else ""
            return f"turn {message.turn_id} for input #{message.input_seq}{again}"
        case UserMessage():
            return f"{message.sender.display_name}: {text(message.text, content)}"
        case Notice():
            return f"{message.tag}: {text(message.text, content)}"
        case AssistantMessage():
            calls = ", ".join(call.name for call in message.tool_calls)
            asked = f", calls {calls}" if calls else ""
            return f"{message.model}: {text(message.text, content)}{asked}; {tokens(message.usage)}"
        case ToolResults():
            results = ", ".join(
                f"{r.tool} {'failed' if r.is_error else 'ok'} {text(r.content, content)}"
                for r in message.results
            )
            return f"turn {message.turn_id}: {results}"
        case TurnFinished():
            error = f" ({message.error})" if message.error else ""
            return f"turn {message.turn_id} {message.outcome}{error}; {tokens(message.usage)}"
        case Compacted():
            return (
                f"compaction {message.number} ({message.reason}): {message.tokens_before:,} → "
                f"{message.tokens_after:,} tokens, summary {text(message.summary, content)}"
            )
        case unhandled:
            assert_never(unhandled)


def output(message: Output, content: bool) -> str:
    match message:
        case ShowTyping():
            return f"typing, turn {message.turn_id}"
        case SendReply():
            failure = "failure " if message.is_failure else ""
            stored = f"stored as {message.text_file}" if message.text_file else ""
            return f"{failure}{message.out_id}: {stored or text(message.text, content)}"
        case SetReaction():
            return f"{message.emoji} on message {message.message_id}"
        case SendFile():
            return f"{message.out_id}: {message.file.file_name}, {message.file.size:,} B"
        case ShowProgress():
            ending = f", {message.ending}" if message.ending else ""
            done = f"{message.tools_done}/{len(message.tools)} tools"
            return f"turn {message.turn_id} #{message.seq} {message.phase}, {done}{ending}"
        case StreamText():
            return f"turn {message.turn_id} #{message.seq}: {text(message.text, content)}"
        case unhandled:
            assert_never(unhandled)


def event(message: Event, content: bool) -> str:
    match message:
        case BadMessage():
            return f"{message.service} on {message.subject} #{message.stream_seq}: {message.reason}"
        case DeadLettered():
            return (
                f"{message.service}: {message.stream} #{message.stream_seq} after "
                f"{message.deliveries} deliveries: {message.last_error}"
            )
        case ModelUsed():
            return f"{message.model}, turn {message.turn_id}: {tokens(message.usage)}"
        case TurnEnded():
            return f"turn {message.turn_id} {message.outcome} in {message.duration_s:g} s"
        case ToolEnded():
            took = f"{message.duration_s:g} s"
            return f"{message.tool} {message.call_id} {message.outcome} in {took}"
        case unhandled:
            assert_never(unhandled)


def control(message: Control, content: bool) -> str:
    match message:
        case NudgeSession():
            return f"input #{message.seq}" if message.seq else "input: any"
        case StatusQuery():
            return "status"
        case unhandled:
            assert_never(unhandled)


def cancel_call(message: CancelCall, content: bool) -> str:
    wait = " (its wait only)" if message.wait_only else ""
    return f"{message.call_id} of {message.session_id}{wait}"


def end_work(message: EndWork, content: bool) -> str:
    return f"{message.conversation_id}{' removed' if message.removed else ''}"


def list_tools(message: ListTools, content: bool) -> str:
    return f"{message.session_type}, capabilities {', '.join(message.capabilities) or '-'}"


def probe(message: ProbePool, content: bool) -> str:
    return f"remote {message.remote}" if message.remote else "host"


def place_files(message: PlaceFiles, content: bool) -> str:
    return f"{len(message.files)} files for {message.conversation_id}"


def direct(message: DirectRequest, content: bool) -> str:
    match message:
        case RunTool():
            return tool_request(message, content)
        case PingRunner():
            return f"ping for {len(message.call_ids)} calls of {message.session_id}"
        case unhandled:
            assert_never(unhandled)
