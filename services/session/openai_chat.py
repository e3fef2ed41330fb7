"""The session's client for `provider = "openai_chat"`: OpenAI chat completions, streamed.

One call, one try (SPEC §7.2): the request body, the SSE stream assembled into a ModelReply, and
every way the call can fail turned into a ProviderError with a one-line reason (SPEC §3.8).
"""

import asyncio
from collections.abc import Sequence
from typing import assert_never

import httpx
import msgspec

from shared.config import ModelConfig
from shared.errors import TransientError
from shared.messages.history import (
    AssistantMessage,
    HistoryEvent,
    Notice,
    SessionStarted,
    ToolCall,
    ToolResults,
    TurnFinished,
    TurnStarted,
    Usage,
    UserMessage,
)
from shared.messages.tools import ToolSpec

CONNECT_TIMEOUT_S = 10.0
MAX_SILENCE_S = 120.0  # a stream silent this long (or timeout_s, if shorter) has stalled
MAX_RETRY_AFTER_S = 60.0
REASON_CHARS = 160


class RequestedCall(msgspec.Struct, frozen=True, kw_only=True):
    """A tool call as the model asked for it."""

    provider_call_id: str
    name: str
    arguments: str  # the model's JSON text, exactly as streamed


class ModelReply(msgspec.Struct, frozen=True, kw_only=True):
    text: str
    tool_calls: list[RequestedCall]
    usage: Usage


class ProviderError(TransientError):
    """The provider call failed; `reason` is one line for the user (SPEC §3.8)."""

    def __init__(
        self, reason: str, *, status: int | None = None, retry_after_s: float = 1.0
    ) -> None:
        self.reason = _one_line(reason)
        self.status = status  # the HTTP status of a non-2xx answer
        super().__init__(self.reason, retry_after_s=retry_after_s)


# --- the wire: what the stream carries (unknown fields are ignored) --------------------------


class FunctionDelta(msgspec.Struct, frozen=True, kw_only=True):
    name: str | None = None
    arguments: str | None = None


class ToolCallDelta(msgspec.Struct, frozen=True, kw_only=True):
    index: int = 0
    call_id: str | None = msgspec.field(default=None, name="id")
    function: FunctionDelta | None = None


class Delta(msgspec.Struct, frozen=True, kw_only=True):
    content: str | None = None
    tool_calls: list[ToolCallDelta] | None = None


class Choice(msgspec.Struct, frozen=True, kw_only=True):
    index: int = 0
    delta: Delta | None = None
    finish_reason: str | None = None


class PromptDetails(msgspec.Struct, frozen=True, kw_only=True):
    cached_tokens: int | None = None


class CompletionDetails(msgspec.Struct, frozen=True, kw_only=True):
    reasoning_tokens: int | None = None


class WireUsage(msgspec.Struct, frozen=True, kw_only=True):
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    prompt_tokens_details: PromptDetails | None = None
    completion_tokens_details: CompletionDetails | None = None


class WireError(msgspec.Struct, frozen=True, kw_only=True):
    message: str | None = None
    code: int | str | None = None


class Chunk(msgspec.Struct, frozen=True, kw_only=True):
    choices: list[Choice] = []
    usage: WireUsage | None = None
    error: WireError | str | None = None  # some compatible servers send a bare message


class ErrorEnvelope(msgspec.Struct, frozen=True, kw_only=True):
    error: WireError | str | None = None


CHUNK: msgspec.json.Decoder[Chunk] = msgspec.json.Decoder(Chunk)
ERROR_BODY: msgspec.json.Decoder[ErrorEnvelope] = msgspec.json.Decoder(ErrorEnvelope)
ENCODER = msgspec.json.Encoder()


# --- history → messages -------------------------------------------------------------------------


def to_messages(system_prompt: str, history: Sequence[HistoryEvent]) -> list[dict[str, object]]:
    """The `messages` of a request: the system prompt, then the conversation as stored.

    Notices are user-role text, each its own message (chat completions take consecutive user
    messages). `history` has a closed tool protocol (`history_repair.closed`).
    """
    messages: list[dict[str, object]] = [{"role": "system", "content": system_prompt}]
    wire_ids: dict[str, str] = {}  # the nearest assistant's calls: our call id → the wire's
    for event in history:
        match event:
            case UserMessage() | Notice():
                messages.append({"role": "user", "content": event.text})
            case AssistantMessage() if not event.tool_calls and not event.text.strip():
                pass  # nothing said; providers refuse an empty assistant message
            case AssistantMessage():
                wire_ids = _wire_ids(event.tool_calls)
                messages.append(_assistant(event, wire_ids))
            case ToolResults():
                messages += [
                    {
                        "role": "tool",
                        "tool_call_id": wire_ids.get(result.call_id, result.call_id),
                        "content": result.content,
                    }
                    for result in event.results
                ]
            case SessionStarted() | TurnStarted() | TurnFinished():
                pass  # bookkeeping, not conversation
            case unhandled:
                assert_never(unhandled)
    return messages


def _wire_ids(calls: Sequence[ToolCall]) -> dict[str, str]:
    """The provider's call ids, unless one is empty or repeats within the message (a server that
    sends no id leaves it empty): the results could not say which call they answer, so such a
    message goes with our ids, which are distinct within a message."""
    provider_ids = [call.provider_call_id for call in calls]
    if all(provider_ids) and len(set(provider_ids)) == len(provider_ids):
        return {call.call_id: call.provider_call_id for call in calls}
    return {call.call_id: call.call_id for call in calls}


def _assistant(event: AssistantMessage, wire_ids: dict[str, str]) -> dict[str, object]:
    if not event.tool_calls:
        return {"role": "assistant", "content": event.text}
    calls = [
        {
            "id": wire_ids[call.call_id],
            "type": "function",
            "function": {"name": call.name, "arguments": call.arguments},
        }
        for call in event.tool_calls
    ]
    return {"role": "assistant", "content": event.text or None, "tool_calls": calls}


def request_body(
    model: ModelConfig, messages: list[dict[str, object]], tools: Sequence[ToolSpec]
) -> dict[str, object]:
    body: dict[str, object] = {"model": model.model, "messages": messages}
    if tools:
        body["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": t.name,
                    "description": t.description,
                    "parameters": t.parameters,
                },
            }
            for t in tools
        ]
        body["tool_choice"] = "auto"
    return body | {
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": model.max_output_tokens,
    }


# --- the call -----------------------------------------------------------------------------------


async def complete(
    client: httpx.AsyncClient,
    model: ModelConfig,
    messages: list[dict[str, object]],
    tools: Sequence[ToolSpec],
) -> ModelReply:
    """One streamed chat completion; any failure is a ProviderError."""
    body = ENCODER.encode(request_body(model, messages, tools))
    try:
        async with asyncio.timeout(model.timeout_s):
            return await _stream(client, model, body)
    except TimeoutError:
        raise ProviderError(f"timed out after {model.timeout_s:g} s") from None


async def _stream(client: httpx.AsyncClient, model: ModelConfig, body: bytes) -> ModelReply:
    host = httpx.URL(model.base_url).host
    silence_s = min(MAX_SILENCE_S, model.timeout_s)
    headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
    if model.api_key:
        headers["Authorization"] = f"Bearer {model.api_key}"
    url = model.base_url.rstrip("/") + "/chat/completions"
    timeout = httpx.Timeout(silence_s, connect=CONNECT_TIMEOUT_S)
    try:
        async with client.stream(
            "POST", url, content=body, headers=headers, timeout=timeout
        ) as response:
            if not response.is_success:
                raise await _http_error(response, host)
            return await _read(response, host)
    except httpx.ConnectTimeout:
        raise ProviderError(f"no connection to {host} within {CONNECT_TIMEOUT_S:g} s") from None
    except httpx.TimeoutException:
        raise ProviderError(f"the stream from {host} was silent for {silence_s:g} s") from None
    except httpx.TransportError as exc:
        raise ProviderError(f"connection to {host} failed: {type(exc).__name__} {exc}") from None


async def _http_error(response: httpx.Response, host: str) -> ProviderError:
    raw = await response.aread()
    try:
        message = _error_text(ERROR_BODY.decode(raw).error) or response.reason_phrase
    except msgspec.DecodeError:
        message = raw.decode(errors="replace")[:REASON_CHARS] or response.reason_phrase
    status = response.status_code
    return ProviderError(
        f"HTTP {status} from {host} after 1 try: {message}",
        status=status,
        retry_after_s=_retry_after_s(response.headers.get("retry-after")),
    )


def _retry_after_s(header: str | None) -> float:
    """Seconds from a `Retry-After` header (the numeric form), capped; 1 s without one."""
    try:
        return min(MAX_RETRY_AFTER_S, max(0.0, float(header))) if header else 1.0
    except ValueError:
        return 1.0


async def _read(response: httpx.Response, host: str) -> ModelReply:
    assembly = Assembly(host)
    async for line in response.aiter_lines():
        if not line.startswith("data:"):
            continue  # blank separators, `event:` lines, `: keep-alive` comments
        data = line.removeprefix("data:").strip()
        if data == "[DONE]":
            return assembly.reply()
        try:
            chunk = CHUNK.decode(data)
        except msgspec.DecodeError as exc:
            raise ProviderError(f"malformed stream chunk from {host}: {exc}") from None
        assembly.add(chunk)
    if not assembly.is_finished:
        raise ProviderError(f"the stream from {host} ended before the response finished")
    return assembly.reply()  # a finished response whose server omits `[DONE]`


class PartialCall:
    """One tool call while its deltas arrive."""

    def __init__(self) -> None:
        self.provider_call_id = ""
        self.name = ""
        self.arguments: list[str] = []


class Assembly:
    """Text, tool calls (per `index`) and usage of one stream, chunk by chunk."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.text: list[str] = []
        self.calls: dict[int, PartialCall] = {}
        self.usage = Usage()
        self.is_finished = False

    def add(self, chunk: Chunk) -> None:
        if chunk.error is not None:
            detail = _error_text(chunk.error) or "no message"
            raise ProviderError(f"error in the stream from {self.host}: {detail}")
        if chunk.usage is not None:
            self.usage = _usage(chunk.usage)
        for choice in chunk.choices:
            if choice.index != 0:
                continue  # we ask for one choice
            self.is_finished = self.is_finished or choice.finish_reason is not None
            if choice.delta is not None:
                self._add_delta(choice.delta)

    def _add_delta(self, delta: Delta) -> None:
        if delta.content:
            self.text.append(delta.content)
        for part in delta.tool_calls or []:
            call = self.calls.setdefault(part.index, PartialCall())
            call.provider_call_id = call.provider_call_id or part.call_id or ""
            if part.function is not None:
                call.name = call.name or part.function.name or ""
                call.arguments.append(part.function.arguments or "")

    def reply(self) -> ModelReply:
        calls = [
            RequestedCall(
                provider_call_id=call.provider_call_id,
                name=call.name,
                arguments="".join(call.arguments),
            )
            for _, call in sorted(self.calls.items())
        ]
        return ModelReply(text="".join(self.text), tool_calls=calls, usage=self.usage)


def _usage(wire: WireUsage) -> Usage:
    prompt = wire.prompt_tokens or 0
    cached = (wire.prompt_tokens_details and wire.prompt_tokens_details.cached_tokens) or 0
    details = wire.completion_tokens_details
    return Usage(
        input=max(0, prompt - cached),
        cache_read=cached,
        output=wire.completion_tokens or 0,
        reasoning=(details and details.reasoning_tokens) or 0,
    )


def _error_text(error: WireError | str | None) -> str:
    match error:
        case WireError(message=str(message)) if message:
            return message
        case WireError(code=code) if code is not None:
            return f"code {code!r}"
        case str():
            return error
    return ""


def _one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= REASON_CHARS else line[: REASON_CHARS - 1] + "…"
