"""What every provider module offers the turn loop (SPEC §7): one streamed model call.

The turn loop knows only this module: a `ModelRequest` (the system prompt, the history as stored,
the tool catalog and request-only notices) goes in, text deltas come out through `on_event` as
they arrive, and a `ModelReply` (text, tool calls, usage) or a `ProviderError` ends the call.
"""

from collections.abc import Callable, Mapping, Sequence
from typing import Literal, Protocol

import httpx
import msgspec

from shared.errors import TransientError
from shared.messages.history import HistoryEvent, Reasoning, Usage
from shared.messages.tools import ToolSpec
from shared.model_config import ModelConfig

REASON_CHARS = 160
# SPEC §7.3: what a retry may cure.
TRANSIENT_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 529})


class RequestedCall(msgspec.Struct, frozen=True, kw_only=True):
    """A tool call as the model asked for it."""

    provider_call_id: str
    name: str
    arguments: str  # the model's JSON text, exactly as streamed


class ModelReply(msgspec.Struct, frozen=True, kw_only=True):
    text: str
    tool_calls: list[RequestedCall]
    usage: Usage
    reasoning: list[Reasoning] = msgspec.field(default_factory=list)


class InlineMedia(msgspec.Struct, frozen=True, kw_only=True):
    """An attachment as this model call sends it (SPEC §8.2), already resized where needed."""

    kind: Literal["image", "document", "audio", "file"]
    media_type: str
    file_name: str
    data: bytes
    file_id: str = ""  # `media.transport = "files_api"`: the provider's id for the upload


class MediaNote(msgspec.Struct, frozen=True, kw_only=True):
    """An attachment the model is not shown: the one-line downgrade note in its place."""

    text: str


MediaPart = InlineMedia | MediaNote


class ModelRequest(msgspec.Struct, frozen=True, kw_only=True):
    system_prompt: str
    history: Sequence[HistoryEvent]  # with a closed tool protocol (`history_repair.closed`)
    tools: Sequence[ToolSpec]
    notice: str | None = None  # a request-only notice after the history (SPEC §3.11)
    # Each attachment of the history as this model gets it, by `Attachment.object_name`
    # (`Attachment.path` for one whose download failed); normalized per model (SPEC §8.2).
    media: Mapping[str, MediaPart] = msgspec.field(default_factory=dict)


class TextDelta(msgspec.Struct, frozen=True, kw_only=True):
    text: str


class ReasoningDelta(msgspec.Struct, frozen=True, kw_only=True):
    """Readable reasoning as it streams (a summary or thinking text, where the API sends one)."""

    text: str


class CallStarted(msgspec.Struct, frozen=True, kw_only=True):
    """The model began a tool call: its name is known, its arguments are still streaming."""

    name: str


class Retrying(msgspec.Struct, frozen=True, kw_only=True):
    """The call is tried again: text streamed so far is replaced by the next try's."""

    attempt: int  # the retry's number; 0 when the call moves to a fallback model


StreamEvent = TextDelta | ReasoningDelta | CallStarted | Retrying
OnEvent = Callable[[StreamEvent], None]


class ProviderError(TransientError):
    """The provider call failed; `reason` is one line for the user (SPEC §3.8)."""

    def __init__(
        self,
        reason: str,
        *,
        status: int | None = None,
        retry_after_s: float | None = None,
        is_transient: bool = True,
    ) -> None:
        self.reason = one_line(reason)
        self.status = status  # the HTTP status of a non-2xx answer
        self.is_transient = is_transient  # may a retry cure it (SPEC §7.3)
        self.retry_after: float | None = retry_after_s  # the provider's `Retry-After`
        self.model_name = ""  # the `[models.<name>]` that failed, once known
        super().__init__(self.reason, retry_after_s=retry_after_s or 1.0)

    def after(self, tries: int) -> "ProviderError":
        """The same error, its reason saying how many tries it took (`… after 4 tries`)."""
        if tries == 1:
            return self
        head, colon, detail = self.reason.partition(": ")
        reason = f"{head} after {tries} tries{colon}{detail}"
        again = type(self)(reason, status=self.status, is_transient=self.is_transient)
        again.retry_after = self.retry_after
        return again


class AuthError(ProviderError):
    """401/403: the model's credentials were refused."""


class ContextLengthError(ProviderError):
    """The request does not fit the model's window: compaction's business, never a fallback."""


class Provider(Protocol):
    async def complete(
        self, http: httpx.AsyncClient, model: ModelConfig, request: ModelRequest, on_event: OnEvent
    ) -> ModelReply:
        """One try of one streamed call; every failure is a ProviderError."""
        ...


CONTEXT_PHRASES = (
    "context length",
    "context_length",
    "context window",
    "maximum context",
    "prompt is too long",
    "too many tokens",
)


def classified(
    reason: str, status: int | None, detail: str, retry_after_s: float | None = None
) -> ProviderError:
    """The error for an HTTP status (None: an error inside the stream) and its message."""
    lowered = detail.lower()
    if status in (None, 400, 413) and any(phrase in lowered for phrase in CONTEXT_PHRASES):
        return ContextLengthError(reason, status=status, is_transient=False)
    if status in (401, 403):
        return AuthError(reason, status=status, is_transient=False)
    transient = status is None or status in TRANSIENT_STATUSES
    return ProviderError(reason, status=status, retry_after_s=retry_after_s, is_transient=transient)


def one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= REASON_CHARS else line[: REASON_CHARS - 1] + "…"
