"""What a tool call gives back: failures as values, and texts capped for the model (SPEC §5.0).

A tool raises ToolError deep inside; the runner turns it into a ToolFailed the model reads.
"""

import msgspec

from shared.errors import ModelBehaviorError
from shared.messages.contract import Attachment
from shared.messages.tools import ErrorKind, FileToSend

MAX_RESULT_CHARS = 100_000
MAX_ERROR_CHARS = 10_000
HEAD_SHARE = 0.4  # a cut text keeps 40 % head, 60 % tail
SPILL_DIR = ".stellaclaw/spill"
_ENCODER = msgspec.json.Encoder()


class ToolError(ModelBehaviorError):
    """A tool call failed in a way the model can act on; it becomes a ToolFailed."""

    def __init__(self, kind: ErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind: ErrorKind = kind


class Result(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Base of every tool's result object: compact JSON, absent optional fields left out."""


class Attached(msgspec.Struct, frozen=True, kw_only=True):
    """A result with files beside it: for the model to see (SPEC §8.3) or for the user."""

    result: Result
    attachments: list[Attachment] = msgspec.field(default_factory=list)
    sends: list[FileToSend] = msgspec.field(default_factory=list)


def encode(result: Result) -> msgspec.Raw:
    return msgspec.Raw(_ENCODER.encode(result))


def with_remote(result: Result, remote: str) -> msgspec.Raw:
    """A selectable-mode call's result, which names the remote it ran on (SPEC §5.0)."""
    fields = msgspec.to_builtins(result)
    assert isinstance(fields, dict)
    return msgspec.Raw(_ENCODER.encode({**fields, "remote": remote}))


def cut_middle(text: str, max_chars: int, marker: str) -> str:
    """Keep 40 % head and 60 % tail of `max_chars` around `marker` (`{omitted}` is filled in)."""
    if len(text) <= max_chars:
        return text
    head = int(max_chars * HEAD_SHARE)
    tail = max_chars - head
    omitted = len(text) - head - tail
    return text[:head] + marker.format(omitted=omitted) + text[len(text) - tail :]


def spill_path(call_id: str) -> str:
    """Where a cut result's whole text is kept, relative to the workspace."""
    return f"{SPILL_DIR}/{call_id}.txt"


def cap_error(message: str) -> str:
    """An error sentence over 10,000 chars keeps its first and last 5,000."""
    if len(message) <= MAX_ERROR_CHARS:
        return message
    half = MAX_ERROR_CHARS // 2
    omitted = len(message) - MAX_ERROR_CHARS
    return f"{message[:half]}…[{omitted} chars omitted]…{message[-half:]}"
