"""The Messages API's SSE stream, read into a ModelReply (SPEC §7.2): text deltas passed on as they
arrive, tool calls and thinking blocks assembled per block `index`, usage from `message_start` and
`message_delta`, and an `error` event turned into a ProviderError of the status its type stands
for (Anthropic's errors page). Thinking blocks are kept whole, signature included, for replay.
"""

import httpx
import msgspec

from services.session.providers.openai_chat import PartialCall, requested
from services.session.providers.protocol import (
    CallStarted,
    ModelReply,
    OnEvent,
    ProviderError,
    ReasoningDelta,
    TextDelta,
    classified,
)
from shared.messages.history import Reasoning, Usage

PROVIDER = "anthropic"
# The status each error type stands for, for errors inside a stream.
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
    thinking: str = ""
    signature: str = ""
    data: str = ""  # `redacted_thinking`: the encrypted thinking


class Delta(msgspec.Struct, frozen=True, kw_only=True):
    type: str = ""  # `text_delta`, `input_json_delta`, …; none in `message_delta`
    text: str = ""
    partial_json: str = ""
    thinking: str = ""
    signature: str = ""
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
ENCODER = msgspec.json.Encoder()


async def read(response: httpx.Response, host: str, on_event: OnEvent) -> ModelReply:
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
        self.thinking: dict[int, dict[str, str]] = {}  # thinking blocks as the API will want them
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
            self.on_event(CallStarted(name=block.name))
        elif block.type == "text":
            self._add_text(block.text)
        elif block.type == "thinking":
            self.thinking[index] = {"type": "thinking", "thinking": block.thinking, "signature": ""}
        elif block.type == "redacted_thinking":
            self.thinking[index] = {"type": "redacted_thinking", "data": block.data}

    def _add_delta(self, index: int, delta: Delta) -> None:
        if delta.type == "text_delta":
            self._add_text(delta.text)
        elif delta.type == "input_json_delta" and index in self.calls:
            self.calls[index].arguments.append(delta.partial_json)
        elif delta.type == "thinking_delta" and index in self.thinking:
            self.thinking[index]["thinking"] += delta.thinking
            if delta.thinking:
                self.on_event(ReasoningDelta(text=delta.thinking))
        elif delta.type == "signature_delta" and index in self.thinking:
            self.thinking[index]["signature"] += delta.signature

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
        calls = requested(self.calls, no_arguments="{}")  # a call without input sends none
        usage = Usage(
            input=self.usage.input_tokens or 0,  # Anthropic counts cached input apart already
            cache_read=self.usage.cache_read_input_tokens or 0,
            cache_write=self.usage.cache_creation_input_tokens or 0,
            output=self.usage.output_tokens or 0,
        )
        reasoning = [
            Reasoning(
                provider=PROVIDER,
                item=ENCODER.encode(block).decode(),
                summary=block.get("thinking", ""),
            )
            for _, block in sorted(self.thinking.items())
        ]
        text = "".join(self.text)
        return ModelReply(text=text, tool_calls=calls, usage=usage, reasoning=reasoning)
