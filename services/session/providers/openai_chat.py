"""`provider = "openai_chat"`: OpenAI-compatible chat completions, streamed (SPEC §7.2).

One call, one try: the request body, the SSE stream assembled into a ModelReply (text deltas
passed on as they arrive), and every way the call can fail turned into a ProviderError with a
one-line reason (SPEC §3.8); retries and fallback are `model_calls`'s.
"""

from collections.abc import Callable, Sequence
from typing import assert_never

import httpx
import msgspec

from services.session.providers import content_parts, http_stream
from services.session.providers.protocol import (
    CallStarted,
    ModelReply,
    ModelRequest,
    OnEvent,
    ProviderError,
    ReasoningDelta,
    RequestedCall,
    StreamEvent,
    TextDelta,
    classified,
)
from shared.messages.history import (
    AssistantMessage,
    Compacted,
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
from shared.model_config import ModelConfig

OPENROUTER_HOST = "openrouter.ai"
BOOKKEEPING = frozenset({SessionStarted, TurnStarted, TurnFinished})  # not conversation


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
    reasoning: str | None = None  # OpenRouter's readable reasoning
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
    cost: float | None = None  # OpenRouter's, in USD, with `usage: {include: true}`


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


def to_messages(
    system_prompt: str, history: Sequence[HistoryEvent], media: content_parts.Media | None = None
) -> list[dict[str, object]]:
    """The `messages` of a request: the system prompt, then the conversation as stored, each
    attachment as `media` has it for this call (SPEC §8.2).

    Notices are user-role text, each its own message (chat completions take consecutive user
    messages). `history` has a closed tool protocol (`history_repair.closed`).
    """
    messages: list[dict[str, object]] = [{"role": "system", "content": system_prompt}]
    wire_ids: dict[str, str] = {}  # the nearest assistant's calls: our call id → the wire's
    for event in history:
        if type(event) in BOOKKEEPING:  # half of a long history: the cheapest test first
            continue
        if isinstance(event, AssistantMessage) and not event.tool_calls:
            if event.text.strip():  # nothing said: providers refuse an empty assistant message
                messages.append({"role": "assistant", "content": event.text})
            continue
        match event:
            case UserMessage():
                content = content_parts.chat_content(event, media or {})
                messages.append({"role": "user", "content": content})
            case Notice() | Compacted():  # the summary of what was compacted, too
                messages.append({"role": "user", "content": event.text})
            case AssistantMessage():
                wire_ids = call_ids_on_wire(event.tool_calls)
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
                messages += content_parts.chat_loaded(event.results, media or {}, wire_ids)
            case SessionStarted() | TurnStarted() | TurnFinished():
                pass  # bookkeeping, not conversation
            case unhandled:
                assert_never(unhandled)
    return messages


def call_ids_on_wire(
    calls: Sequence[ToolCall], is_valid: Callable[[str], object] = bool
) -> dict[str, str]:
    """The provider's call ids, unless one is empty, repeats within the message (a server that
    sends no id leaves it empty: the results could not say which call they answer) or is not
    `is_valid` for the wire: then our ids, which are distinct within a message."""
    provider_ids = [call.provider_call_id for call in calls]
    if all(map(is_valid, provider_ids)) and len(set(provider_ids)) == len(provider_ids):
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
    body |= {
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": model.max_output_tokens,
    }
    if model.reasoning is not None and model.reasoning.effort:
        body["reasoning"] = {"effort": model.reasoning.effort}
    if model.service_tier != "default":
        body["service_tier"] = model.service_tier
    if httpx.URL(model.base_url).host == OPENROUTER_HOST:
        body["usage"] = {"include": True}  # OpenRouter reports the cost with the usage
        if tools and model.can("web_search"):
            body["plugins"] = [{"id": "web"}]  # OpenRouter's native web search (SPEC §7.2)
        if model.cache_ttl and model.model.startswith("anthropic/"):
            body["cache_control"] = cache_marker(model.cache_ttl)  # SPEC §7.4
    return body


def cache_marker(ttl_s: int) -> dict[str, str]:
    """Anthropic's prompt-cache marker for a TTL of 300 s or an hour."""
    return {"type": "ephemeral", "ttl": "1h"} if ttl_s == 3600 else {"type": "ephemeral"}


# --- the call -----------------------------------------------------------------------------------


class OpenAIChat:
    """The Provider for chat completions."""

    async def complete(
        self, http: httpx.AsyncClient, model: ModelConfig, request: ModelRequest, on_event: OnEvent
    ) -> ModelReply:
        messages = to_messages(request.system_prompt, request.history, request.media)
        if request.notice:  # request-only notices are not stored in history
            messages.append({"role": "user", "content": request.notice})
        return await complete(http, model, messages, request.tools, on_event)


async def complete(
    client: httpx.AsyncClient,
    model: ModelConfig,
    messages: list[dict[str, object]],
    tools: Sequence[ToolSpec],
    on_event: OnEvent | None = None,
) -> ModelReply:
    """One streamed chat completion; any failure is a ProviderError."""
    body = ENCODER.encode(request_body(model, messages, tools))
    headers = http_stream.bearer_headers(model)
    host = httpx.URL(model.base_url).host

    async def read(response: httpx.Response) -> ModelReply:
        return await _read(response, host, on_event)

    request = ("/chat/completions", headers, body)
    return await http_stream.post(client, model, request, read, error_text)


def error_text(raw: bytes) -> tuple[str, str]:
    """OpenAI's error body `{"error": {"message", "type", "code"}}`: its message, and the
    message with its code (how a context-length error is told apart)."""
    try:
        error = ERROR_BODY.decode(raw).error
    except msgspec.DecodeError:
        return "", ""
    message = wire_error_message(error)
    code = error.code if isinstance(error, WireError) and error.code is not None else ""
    return message, f"{code} {message}".strip()


async def _read(response: httpx.Response, host: str, on_event: OnEvent | None) -> ModelReply:
    assembly = Assembly(host, on_event)
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


def requested(calls: dict[int, PartialCall], *, no_arguments: str = "") -> list[RequestedCall]:
    """The assembled calls in stream order; `no_arguments` stands for arguments never sent."""
    return [
        RequestedCall(
            provider_call_id=call.provider_call_id,
            name=call.name,
            arguments="".join(call.arguments) or no_arguments,
        )
        for _, call in sorted(calls.items())
    ]


class Assembly:
    """Text, tool calls (per `index`) and usage of one stream, chunk by chunk."""

    def __init__(self, host: str, on_event: OnEvent | None = None) -> None:
        self.host = host
        self.on_event = on_event
        self.text: list[str] = []
        self.calls: dict[int, PartialCall] = {}
        self.usage = Usage()
        self.is_finished = False

    def add(self, chunk: Chunk) -> None:
        if chunk.error is not None:
            detail = wire_error_message(chunk.error) or "no message"
            status = chunk.error.code if isinstance(chunk.error, WireError) else None
            code = status if isinstance(status, int) and 400 <= status < 600 else None
            raise classified(f"error in the stream from {self.host}: {detail}", code, detail)
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
            self._tell(TextDelta(text=delta.content))
        if delta.reasoning:
            self._tell(ReasoningDelta(text=delta.reasoning))
        for part in delta.tool_calls or []:
            call = self.calls.setdefault(part.index, PartialCall())
            call.provider_call_id = call.provider_call_id or part.call_id or ""
            if part.function is not None:
                if not call.name and part.function.name:
                    call.name = part.function.name
                    self._tell(CallStarted(name=call.name))
                call.arguments.append(part.function.arguments or "")

    def _tell(self, event: StreamEvent) -> None:
        if self.on_event is not None:
            self.on_event(event)

    def reply(self) -> ModelReply:
        text = "".join(self.text)
        return ModelReply(text=text, tool_calls=requested(self.calls), usage=self.usage)


def _usage(wire: WireUsage) -> Usage:
    prompt = wire.prompt_tokens or 0
    cached = (wire.prompt_tokens_details and wire.prompt_tokens_details.cached_tokens) or 0
    details = wire.completion_tokens_details
    return Usage(
        input=max(0, prompt - cached),
        cache_read=cached,
        output=wire.completion_tokens or 0,
        reasoning=(details and details.reasoning_tokens) or 0,
        cost=wire.cost,
    )


def wire_error_message(error: WireError | str | None) -> str:
    match error:
        case WireError(message=str(message)) if message:
            return message
        case WireError(code=code) if code is not None:
            return f"code {code!r}"
        case str():
            return error
    return ""
