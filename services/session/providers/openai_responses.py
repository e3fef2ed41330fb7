"""`provider = "openai_responses"`: the OpenAI Responses API, streamed (SPEC §7.2).

One call, one try: the history as `input` items, the SSE stream's typed events assembled into a
ModelReply (text deltas passed on as they arrive), and every way the call can fail turned into a
ProviderError with a one-line reason (SPEC §3.8); retries and fallback are `model_calls`'s.
Reasoning is neither requested nor replayed: stored history keeps no reasoning items yet.
"""

from collections.abc import Sequence
from typing import assert_never

import httpx
import msgspec

from services.session.providers import http_stream
from services.session.providers.openai_chat import (
    OPENROUTER_HOST,
    PartialCall,
    WireError,
    cache_marker,
    error_text,
    wire_error_message,
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
    ToolCall,
    ToolResults,
    TurnFinished,
    TurnStarted,
    Usage,
    UserMessage,
)
from shared.messages.tools import ToolSpec
from shared.model_config import ModelConfig

# --- the wire: the stream's events, decoded by their `type` (unknown fields are ignored) -------


class Event(msgspec.Struct, frozen=True, kw_only=True):
    type: str


class TextPiece(msgspec.Struct, frozen=True, kw_only=True):
    delta: str


class OutputItem(msgspec.Struct, frozen=True, kw_only=True):
    """An item of `response.output`; only a `function_call`'s fields are read."""

    type: str
    item_id: str | None = msgspec.field(default=None, name="id")
    call_id: str | None = None
    name: str | None = None
    arguments: str | None = None


class ItemEvent(msgspec.Struct, frozen=True, kw_only=True):
    output_index: int = 0
    item: OutputItem


class ArgumentsPiece(msgspec.Struct, frozen=True, kw_only=True):
    item_id: str | None = None
    output_index: int = 0
    delta: str


class WireUsage(msgspec.Struct, frozen=True, kw_only=True):
    input_tokens: int | None = None
    output_tokens: int | None = None
    input_tokens_details: dict[str, int | None] | None = None  # `cached_tokens`
    output_tokens_details: dict[str, int | None] | None = None  # `reasoning_tokens`


class WireResponse(msgspec.Struct, frozen=True, kw_only=True):
    usage: WireUsage | None = None
    error: WireError | None = None


class ResponseEvent(msgspec.Struct, frozen=True, kw_only=True):
    """`response.completed`, `response.incomplete` and `response.failed`: the whole response."""

    response: WireResponse = WireResponse()


class ErrorEvent(msgspec.Struct, frozen=True, kw_only=True):
    """`error`: OpenAI puts `code` and `message` at the top; some servers nest an `error`."""

    code: int | str | None = None
    message: str | None = None
    error: WireError | None = None


EVENT: msgspec.json.Decoder[Event] = msgspec.json.Decoder(Event)
TEXT_PIECE: msgspec.json.Decoder[TextPiece] = msgspec.json.Decoder(TextPiece)
ITEM_EVENT: msgspec.json.Decoder[ItemEvent] = msgspec.json.Decoder(ItemEvent)
ARGUMENTS_PIECE: msgspec.json.Decoder[ArgumentsPiece] = msgspec.json.Decoder(ArgumentsPiece)
RESPONSE_EVENT: msgspec.json.Decoder[ResponseEvent] = msgspec.json.Decoder(ResponseEvent)
ERROR_EVENT: msgspec.json.Decoder[ErrorEvent] = msgspec.json.Decoder(ErrorEvent)
ENCODER = msgspec.json.Encoder()


# --- history → input items ------------------------------------------------------------------


def to_input(history: Sequence[HistoryEvent], notice: str | None = None) -> list[dict[str, object]]:
    """The `input` items of a request: the conversation as stored, then a request-only notice.

    Notices are user-role text (SPEC §3.11). `history` has a closed tool protocol
    (`history_repair.closed`), so every function_call has its function_call_output.
    """
    items: list[dict[str, object]] = []
    wire_ids: dict[str, str] = {}  # the nearest assistant's calls: our call id → the wire's
    for event in history:
        match event:
            case UserMessage() | Notice():
                items.append(_user(event.text))
            case AssistantMessage():
                wire_ids = _wire_ids(event.tool_calls)
                items += _assistant(event, wire_ids)
            case ToolResults():  # each output under the id its function_call went with
                items += [
                    _output(wire_ids.get(r.call_id, r.call_id), r.content) for r in event.results
                ]
            case SessionStarted() | TurnStarted() | TurnFinished():
                pass  # bookkeeping, not conversation
            case unhandled:
                assert_never(unhandled)
    if notice:
        items.append(_user(notice))
    return items


def _user(text: str) -> dict[str, object]:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def _output(call_id: str, content: str) -> dict[str, object]:
    return {"type": "function_call_output", "call_id": call_id, "output": content}


def _wire_ids(calls: Sequence[ToolCall]) -> dict[str, str]:
    """Each call's provider id, ours when it is empty; ours for all when a provider id repeats
    within the message, since the outputs could not say which call they answer."""
    wire_ids: dict[str, str] = {c.call_id: c.provider_call_id or c.call_id for c in calls}
    if len(set(wire_ids.values())) < len(wire_ids):
        return {call.call_id: call.call_id for call in calls}
    return wire_ids


def _assistant(event: AssistantMessage, wire_ids: dict[str, str]) -> list[dict[str, object]]:
    items: list[dict[str, object]] = []
    if event.text.strip():  # nothing said: no message item
        content = [{"type": "output_text", "text": event.text}]
        items.append({"type": "message", "role": "assistant", "content": content})
    items += [
        {
            "type": "function_call",
            "call_id": wire_ids[call.call_id],
            "name": call.name,
            "arguments": call.arguments,
        }
        for call in event.tool_calls
    ]
    return items


def cache_key(history: Sequence[HistoryEvent]) -> str | None:
    """SPEC §7.4: `<session>:<compaction count>`; no compaction is recorded yet, so `:0`."""
    started = next((e for e in history if isinstance(e, SessionStarted)), None)
    return f"{started.session_id}:0" if started is not None else None


def request_body(model: ModelConfig, request: ModelRequest) -> dict[str, object]:
    body: dict[str, object] = {
        "model": model.model,
        "instructions": request.system_prompt,
        "input": to_input(request.history, request.notice),
    }
    if request.tools:
        body["tools"] = [_tool(spec) for spec in request.tools]
        body |= {"tool_choice": "auto", "parallel_tool_calls": True}
    body |= {"stream": True, "store": False, "max_output_tokens": model.max_output_tokens}
    if model.service_tier != "default":
        body["service_tier"] = model.service_tier
    key = cache_key(request.history)
    if key is not None:
        body["prompt_cache_key"] = key
    is_openrouter = httpx.URL(model.base_url).host == OPENROUTER_HOST
    if is_openrouter and model.cache_ttl and model.model.startswith("anthropic/"):
        body["cache_control"] = cache_marker(model.cache_ttl)  # SPEC §7.4
    return body


def _tool(spec: ToolSpec) -> dict[str, object]:
    return {
        "type": "function",
        "name": spec.name,
        "description": spec.description,
        "parameters": spec.parameters,
    }


# --- the call -----------------------------------------------------------------------------------


class OpenAIResponses:
    """The Provider for the Responses API."""

    async def complete(
        self, http: httpx.AsyncClient, model: ModelConfig, request: ModelRequest, on_event: OnEvent
    ) -> ModelReply:
        body = ENCODER.encode(request_body(model, request))
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        headers |= model.headers
        if model.api_key:
            headers["Authorization"] = f"Bearer {model.api_key}"
        host = httpx.URL(model.base_url).host

        async def read(response: httpx.Response) -> ModelReply:
            return await _read(response, host, on_event)

        return await http_stream.post(http, model, ("/responses", headers, body), read, error_text)


async def _read(response: httpx.Response, host: str, on_event: OnEvent) -> ModelReply:
    """The stream's events until the response ends (the API sends no `[DONE]`)."""
    assembly = Assembly(host, on_event)
    async for line in response.aiter_lines():
        if not line.startswith("data:"):
            continue  # blank separators, `event:` lines (the data names its type), comments
        try:
            assembly.add(line.removeprefix("data:").strip())
        except msgspec.DecodeError as exc:
            raise ProviderError(f"malformed stream event from {host}: {exc}") from None
        if assembly.is_finished:
            return assembly.reply()
    raise ProviderError(f"the stream from {host} ended before the response finished")


class Assembly:
    """Text, function calls (per `output_index`) and usage of one stream, event by event."""

    def __init__(self, host: str, on_event: OnEvent) -> None:
        self.host = host
        self.on_event = on_event
        self.text: list[str] = []
        self.calls: dict[int, PartialCall] = {}
        self.indexes: dict[str, int] = {}  # item id → output_index
        self.usage = Usage()
        self.is_finished = False

    def add(self, data: str) -> None:
        """One event's JSON; a DecodeError if it is not what its type promises."""
        kind = EVENT.decode(data).type
        match kind:
            case "response.output_text.delta":
                self._say(TEXT_PIECE.decode(data).delta)
            case "response.output_item.added" | "response.output_item.done":
                self._item(ITEM_EVENT.decode(data), is_done=kind.endswith(".done"))
            case "response.function_call_arguments.delta":
                self._arguments(ARGUMENTS_PIECE.decode(data))
            case "response.completed" | "response.incomplete":  # incomplete: cut at a limit
                usage = RESPONSE_EVENT.decode(data).response.usage
                self.usage = _usage(usage) if usage is not None else self.usage
                self.is_finished = True
            case "response.failed":
                error = RESPONSE_EVENT.decode(data).response.error
                raise self._failure(f"the response from {self.host} failed", error)
            case "error":
                event = ERROR_EVENT.decode(data)
                error = event.error or WireError(message=event.message, code=event.code)
                raise self._failure(f"error in the stream from {self.host}", error)

    def _say(self, text: str) -> None:
        if text:
            self.text.append(text)
            self.on_event(TextDelta(text=text))

    def _item(self, event: ItemEvent, *, is_done: bool) -> None:
        item = event.item
        if item.type != "function_call":
            return
        call = self.calls.setdefault(event.output_index, PartialCall())
        if item.item_id:
            self.indexes[item.item_id] = event.output_index
        call.provider_call_id = item.call_id or call.provider_call_id
        call.name = item.name or call.name
        if is_done and item.arguments is not None:
            call.arguments = [item.arguments]  # the complete arguments win over the deltas

    def _arguments(self, piece: ArgumentsPiece) -> None:
        index = self.indexes.get(piece.item_id or "", piece.output_index)
        self.calls.setdefault(index, PartialCall()).arguments.append(piece.delta)

    def _failure(self, what: str, error: WireError | None) -> ProviderError:
        error = error or WireError()
        detail = wire_error_message(error) or "no message"
        code = error.code
        status = code if isinstance(code, int) and 400 <= code < 600 else None
        return classified(f"{what}: {detail}", status, f"{code or ''} {detail}")

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
    cached = (wire.input_tokens_details or {}).get("cached_tokens") or 0
    return Usage(
        input=max(0, (wire.input_tokens or 0) - cached),
        cache_read=cached,
        output=wire.output_tokens or 0,
        reasoning=(wire.output_tokens_details or {}).get("reasoning_tokens") or 0,
    )
