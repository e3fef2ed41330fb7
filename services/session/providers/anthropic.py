"""`provider = "anthropic"`: the Messages API, streamed (SPEC §7.2, §7.4).

One call, one try: the history as alternating user and assistant messages of content blocks, the
prompt-cache markers, the SSE stream assembled into a ModelReply (text deltas passed on as they
arrive), and every way the call can fail turned into a ProviderError with a one-line reason
(SPEC §3.8); retries and fallback are `model_calls`'s. Thinking is not requested: replaying its
signed blocks needs history that keeps them.
"""

import re
from collections.abc import Sequence
from typing import Literal, assert_never

import httpx
import msgspec

from services.session.providers import http_stream
from services.session.providers.openai_chat import (
    PartialCall,
    cache_marker,
    call_ids_on_wire,
)
from services.session.providers.protocol import (
    ModelReply,
    ModelRequest,
    OnEvent,
    ProviderError,
    RequestedCall,
    TextDelta,
    classified,
)
from shared.messages.history import (
    AssistantMessage,
    HistoryEvent,
    Notice,
    SessionStarted,
    ToolResults,
    TurnFinished,
    TurnStarted,
    Usage,
    UserMessage,
)
from shared.model_config import ModelConfig

API_VERSION = "2023-06-01"
TOOL_USE_ID = re.compile(r"[A-Za-z0-9_-]+")  # the ids the API accepts in a tool_use block
# The status each error type stands for (Anthropic's errors page), for errors inside a stream.
ERROR_STATUSES = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}

Block = dict[str, object]


class Message(msgspec.Struct, frozen=True, kw_only=True):
    """One request message; its content list grows while same-role events are merged into it."""

    role: Literal["user", "assistant"]
    content: list[Block]


# --- the wire: what the stream carries (unknown fields and event types are ignored) ------------


class WireUsage(msgspec.Struct, frozen=True, kw_only=True):
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None


class MessageHead(msgspec.Struct, frozen=True, kw_only=True):
    usage: WireUsage | None = None


class ContentBlock(msgspec.Struct, frozen=True, kw_only=True):
    type: str
    text: str = ""
    block_id: str = msgspec.field(default="", name="id")
    name: str = ""


class Delta(msgspec.Struct, frozen=True, kw_only=True):
    type: str = ""  # `text_delta`, `input_json_delta`, …; none in `message_delta`
    text: str = ""
    partial_json: str = ""
    stop_reason: str | None = None


class WireError(msgspec.Struct, frozen=True, kw_only=True):
    type: str = ""
    message: str = ""


class Event(msgspec.Struct, frozen=True, kw_only=True):
    type: str = ""  # empty: the SSE `event:` name says it
    index: int = 0
    message: MessageHead | None = None
    content_block: ContentBlock | None = None
    delta: Delta | None = None
    usage: WireUsage | None = None
    error: WireError | None = None


class ErrorEnvelope(msgspec.Struct, frozen=True, kw_only=True):
    error: WireError | None = None


EVENT: msgspec.json.Decoder[Event] = msgspec.json.Decoder(Event)
ERROR_BODY: msgspec.json.Decoder[ErrorEnvelope] = msgspec.json.Decoder(ErrorEnvelope)
# Tool input must be an object; its values stay the model's JSON (style 18).
ToolInput = dict[str, msgspec.Raw]
TOOL_INPUT: msgspec.json.Decoder[ToolInput] = msgspec.json.Decoder(ToolInput)
ENCODER = msgspec.json.Encoder()


# --- history → messages -------------------------------------------------------------------------


def to_messages(history: Sequence[HistoryEvent], notice: str | None = None) -> list[Message]:
    """The `messages` of a request: the conversation as stored, then the request's notice.

    Notices are user-role text (SPEC §3.11). The API wants user and assistant to alternate, so an
    event of the role just sent joins that message. `history` has a closed tool protocol
    (`history_repair.closed`): tool results follow their calls at once.
    """
    messages: list[Message] = []
    wire_ids: dict[str, str] = {}  # the nearest assistant's calls: our call id → the wire's
    for event in history:
        match event:
            case UserMessage() | Notice():
                _add(messages, "user", _text(event.text))
            case AssistantMessage():
                wire_ids = call_ids_on_wire(event.tool_calls, TOOL_USE_ID.fullmatch)
                _add(messages, "assistant", _assistant(event, wire_ids))
            case ToolResults():
                results: list[Block] = [
                    {
                        "type": "tool_result",
                        "tool_use_id": wire_ids.get(result.call_id, result.call_id),
                        "content": result.content,
                        "is_error": result.is_error,
                    }
                    for result in event.results
                ]
                _add(messages, "user", results)
            case SessionStarted() | TurnStarted() | TurnFinished():
                pass  # bookkeeping, not conversation
            case unhandled:
                assert_never(unhandled)
    if notice:  # request-only notices are not stored in history
        _add(messages, "user", _text(notice))
    return messages


def _add(messages: list[Message], role: Literal["user", "assistant"], blocks: list[Block]) -> None:
    if not blocks:
        return  # nothing said; the API refuses empty content
    if messages and messages[-1].role == role:
        messages[-1].content.extend(blocks)
    else:
        messages.append(Message(role=role, content=blocks))


def _text(text: str) -> list[Block]:
    """A text block, or none for blank text (the API refuses blank text blocks)."""
    return [{"type": "text", "text": text}] if text.strip() else []


def _assistant(event: AssistantMessage, wire_ids: dict[str, str]) -> list[Block]:
    uses: list[Block] = [
        {
            "type": "tool_use",
            "id": wire_ids[call.call_id],
            "name": call.name,
            "input": _tool_input(call.arguments),
        }
        for call in event.tool_calls
    ]
    return _text(event.text) + uses


def _tool_input(arguments: str) -> ToolInput:
    """The stored arguments as an object; arguments that are none were already refused as
    `invalid_arguments`, and the API takes only an object."""
    try:
        return TOOL_INPUT.decode(arguments)
    except msgspec.DecodeError:
        return {}


def request_body(model: ModelConfig, request: ModelRequest) -> dict[str, object]:
    """The JSON body, with prompt-cache markers when `cache_ttl` asks for them (SPEC §7.4)."""
    system: Block = {"type": "text", "text": request.system_prompt}
    messages = to_messages(request.history, request.notice)
    tools: list[Block] = [
        {"name": t.name, "description": t.description, "input_schema": t.parameters}
        for t in request.tools
    ]
    if model.cache_ttl:
        marker = cache_marker(model.cache_ttl)
        system["cache_control"] = marker
        if tools:
            tools[-1]["cache_control"] = marker
        if messages:
            messages[-1].content[-1] = messages[-1].content[-1] | {"cache_control": marker}
    body: dict[str, object] = {
        "model": model.model,
        "max_tokens": model.max_output_tokens,
        "system": [system],
        "messages": messages,
        "stream": True,
    }
    if tools:
        body["tools"] = tools
    return body


# --- the call -----------------------------------------------------------------------------------


class Anthropic:
    """The Provider for the Messages API."""

    async def complete(
        self, http: httpx.AsyncClient, model: ModelConfig, request: ModelRequest, on_event: OnEvent
    ) -> ModelReply:
        body = ENCODER.encode(request_body(model, request))
        host = httpx.URL(model.base_url).host

        async def read(response: httpx.Response) -> ModelReply:
            return await _read(response, host, on_event)

        sending = ("/messages", _headers(model), body)
        return await http_stream.post(http, model, sending, read, _error_text)


def _headers(model: ModelConfig) -> httpx.Headers:
    headers = httpx.Headers({"content-type": "application/json", "anthropic-version": API_VERSION})
    headers.update(model.headers)  # names compare case-insensitively: a configured one wins
    if model.api_key:
        headers["x-api-key"] = model.api_key
    return headers


def _error_text(raw: bytes) -> tuple[str, str]:
    """Anthropic's error body is `{"type": "error", "error": {"type": …, "message": …}}`."""
    try:
        error = ERROR_BODY.decode(raw).error
    except msgspec.DecodeError:
        return "", ""
    message = (error and (error.message or error.type)) or ""
    return message, message


async def _read(response: httpx.Response, host: str, on_event: OnEvent) -> ModelReply:
    assembly = Assembly(host, on_event)
    name = ""  # the last `event:` line's
    async for line in response.aiter_lines():
        if line.startswith("event:"):
            name = line.removeprefix("event:").strip()
            continue
        if not line.startswith("data:"):
            continue  # blank separators, comments
        try:
            event = EVENT.decode(line.removeprefix("data:").strip())
        except msgspec.DecodeError as exc:
            raise ProviderError(f"malformed stream event from {host}: {exc}") from None
        assembly.add(event if event.type else msgspec.structs.replace(event, type=name))
        if assembly.is_finished:
            return assembly.reply()
    raise ProviderError(f"the stream from {host} ended before the response finished")


class Assembly:
    """Text, tool calls (per block `index`) and usage of one stream, event by event."""

    def __init__(self, host: str, on_event: OnEvent) -> None:
        self.host = host
        self.on_event = on_event
        self.text: list[str] = []
        self.calls: dict[int, PartialCall] = {}
        self.usage = WireUsage()
        self.is_finished = False

    def add(self, event: Event) -> None:
        match event.type:
            case "message_start" if event.message is not None:
                self._add_usage(event.message.usage)
            case "content_block_start" if event.content_block is not None:
                self._start(event.index, event.content_block)
            case "content_block_delta" if event.delta is not None:
                self._add_delta(event.index, event.delta)
            case "message_delta":
                self._add_usage(event.usage)
            case "message_stop":
                self.is_finished = True
            case "error":
                raise self._error(event.error or WireError())
            case _:
                pass  # `ping`, `content_block_stop`, and event types added later

    def _start(self, index: int, block: ContentBlock) -> None:
        if block.type == "tool_use":
            call = self.calls[index] = PartialCall()
            call.provider_call_id, call.name = block.block_id, block.name
        elif block.type == "text":
            self._add_text(block.text)

    def _add_delta(self, index: int, delta: Delta) -> None:
        if delta.type == "text_delta":
            self._add_text(delta.text)
        elif delta.type == "input_json_delta" and index in self.calls:
            self.calls[index].arguments.append(delta.partial_json)

    def _add_text(self, text: str) -> None:
        if text:
            self.text.append(text)
            self.on_event(TextDelta(text=text))

    def _add_usage(self, wire: WireUsage | None) -> None:
        """`message_start` has the input counts, `message_delta` the output (and may repeat the
        input counts, cumulative): a later count replaces an earlier one."""
        if wire is not None:
            given = {k: v for k, v in msgspec.structs.asdict(wire).items() if v is not None}
            self.usage = msgspec.structs.replace(self.usage, **given)

    def _error(self, error: WireError) -> ProviderError:
        detail = error.message or "no message"
        reason = f"error in the stream from {self.host}: {error.type or 'error'}: {detail}"
        return classified(reason, ERROR_STATUSES.get(error.type), detail)

    def reply(self) -> ModelReply:
        calls = [
            RequestedCall(
                provider_call_id=call.provider_call_id,
                name=call.name,
                arguments="".join(call.arguments) or "{}",  # a call without input sends none
            )
            for _, call in sorted(self.calls.items())
        ]
        usage = Usage(
            input=self.usage.input_tokens or 0,  # Anthropic counts cached input apart already
            cache_read=self.usage.cache_read_input_tokens or 0,
            cache_write=self.usage.cache_creation_input_tokens or 0,
            output=self.usage.output_tokens or 0,
        )
        return ModelReply(text="".join(self.text), tool_calls=calls, usage=usage)
