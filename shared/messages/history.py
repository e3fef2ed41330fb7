"""Session history events on `sc.hist.<session>` (stream SC_HIST), SPEC §3.10's names."""

from collections.abc import Iterable
from datetime import datetime
from typing import Literal

import msgspec

from shared.ids import CallIdField, SessionIdField, TurnIdField
from shared.messages.contract import Attachment, BusMessage, Sender, Value
from shared.messages.tools import FileToSend


class Usage(Value, frozen=True, kw_only=True):
    """Tokens of one model call (SPEC §7.5)."""

    input: int = 0
    cache_read: int = 0
    cache_write: int = 0
    output: int = 0
    reasoning: int = 0  # a part of `output`
    cost: float | None = None  # USD: the provider's figure, else from `prices`; None: unknown


USAGE_COUNTS = ("input", "cache_read", "cache_write", "output", "reasoning")


def summed(usages: Iterable[Usage]) -> Usage:
    """The sum; its cost is the sum of the known costs, unknown when no call had one."""
    counts = dict.fromkeys(USAGE_COUNTS, 0)
    cost: float | None = None
    for usage in usages:
        for name in USAGE_COUNTS:
            counts[name] += getattr(usage, name)
        if usage.cost is not None:
            cost = (cost or 0.0) + usage.cost
    return Usage(**counts, cost=cost)


class ToolCall(Value, frozen=True, kw_only=True):
    call_id: CallIdField  # ours: the provider's id when it is subject-safe, else `c<n>`
    provider_call_id: str  # kept for the wire
    name: str
    arguments: str  # the model's JSON text, exactly as received


class ToolResult(Value, frozen=True, kw_only=True):
    call_id: CallIdField
    tool: str
    content: str  # compact JSON, as the model reads it
    is_error: bool = False
    attachments: list[Attachment] = msgspec.field(default_factory=list)  # loaded (SPEC §8.3)
    sends: list[FileToSend] = msgspec.field(default_factory=list)  # offered to the user (§5.6)


class SessionStarted(BusMessage, frozen=True, kw_only=True, tag="session_started"):
    session_id: SessionIdField
    session_type: Literal["foreground", "background", "subagent"]
    model: str
    sandbox: str = ""  # the environment line on command isolation its system prompt states


class TurnStarted(BusMessage, frozen=True, kw_only=True, tag="turn_started"):
    turn_id: TurnIdField
    input_seq: int  # the input that started it: a user message, or a `/continue`
    continues: TurnIdField | None = None  # `/continue`: the failed or cut turn it resumes


class UserMessage(BusMessage, frozen=True, kw_only=True, tag="user_message"):
    turn_id: TurnIdField
    text: str
    sender: Sender
    follow_ups: list[int] = msgspec.field(default_factory=list)  # input seqs folded in (SPEC §3.5)
    attachments: list[Attachment] = msgspec.field(default_factory=list)


class Notice(BusMessage, frozen=True, kw_only=True, tag="notice"):
    """A stored notice (SPEC §3.11), sent to the model as user-role text."""

    turn_id: TurnIdField
    tag: str  # `Cancelled`, …
    text: str  # the whole line, tag included
    sandbox: str = ""  # `Runtime Prompt Updates`: the sandbox line in force from now on


class Reasoning(Value, frozen=True, kw_only=True):
    """A reasoning item (Responses, Codex) or thinking block (Anthropic) as the API sent it.

    Replayed unchanged to the wire format that made it and dropped for any other (SPEC §8.2).
    """

    provider: str  # the `[models.<name>] provider` whose stream carried it
    item: str  # the item's JSON, exactly as received
    summary: str = ""  # its readable text, when the API gave one


class AssistantMessage(BusMessage, frozen=True, kw_only=True, tag="assistant_message"):
    turn_id: TurnIdField
    text: str
    tool_calls: list[ToolCall] = msgspec.field(default_factory=list)
    model: str
    usage: Usage = Usage()
    reasoning: list[Reasoning] = msgspec.field(default_factory=list)  # before the text and calls
    duration_s: float = 0.0  # the model call's, from asking to the answer (metrics)


class ToolResults(BusMessage, frozen=True, kw_only=True, tag="tool_results"):
    """All results of one batch, in the order the model asked for them."""

    turn_id: TurnIdField
    results: list[ToolResult]


class TurnFinished(BusMessage, frozen=True, kw_only=True, tag="turn_finished"):
    turn_id: TurnIdField
    outcome: Literal["answered", "cancelled", "failed"]
    error: str | None = None
    can_continue: bool = False
    cancel_seq: int = 0  # `cancelled`: the input seq (SC_IN) of the /cancel that ended it
    usage: Usage = Usage()  # the turn's model calls, summed (SPEC §7.5)


COMPRESSION_TAG = "[Stellaclaw Context Compression]"


class Compacted(BusMessage, frozen=True, kw_only=True, tag="compacted"):
    """A compaction (SPEC §4.3): the model's view restarts here, as one user-role message with the
    summary (`text`), then the verbatim tail (the events stored from `tail_from_seq` up to this
    one), then whatever follows. A rebuild reads from the last one on (DESIGN §5)."""

    session_id: SessionIdField
    number: int  # 1, 2, …: the prompt cache key's `<session>:<number>`
    summary: str
    tail_from_seq: int  # the SC_HIST sequence of the tail's first event (past the end: no tail)
    turns: int  # turns started before the tail (numbering goes on from them)
    inputs_through: int = 0  # the last input seq (SC_SESS) whose effect was folded in
    usage: Usage = Usage()  # the model calls folded in, summed (session totals go on)
    sandbox: str = ""  # the sandbox line in force (the prompt's environment line)
    turn_id: TurnIdField | None = None  # the turn it ran in (None: idle or `/compact`)
    opened: TurnStarted | None = None  # that turn's start, when it was folded in (recovery)
    rounds: int = 0  # that turn's tool batches folded into the summary (call ids stay unique)
    tokens_before: int = 0
    tokens_after: int = 0
    reason: Literal["threshold", "context_length", "command", "idle"] = "threshold"
    at: datetime | None = None  # when it was made (`/status`: `Last compaction: 3m ago`)

    @property
    def text(self) -> str:
        """The user-role message the model reads in place of what was compacted."""
        return f"{COMPRESSION_TAG}\n\n{self.summary}"


HistoryEvent = (
    SessionStarted
    | TurnStarted
    | UserMessage
    | Notice
    | AssistantMessage
    | ToolResults
    | TurnFinished
    | Compacted
)
HISTORY: msgspec.json.Decoder[HistoryEvent] = msgspec.json.Decoder(HistoryEvent)
