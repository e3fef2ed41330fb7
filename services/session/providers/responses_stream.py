"""The Responses API's SSE stream, read into a ModelReply (SPEC §7.2): each event decoded by its
`type`, text and readable reasoning passed on as they arrive, function calls assembled per
`output_index`, reasoning items kept as received for replay, usage from `response.completed`, and
`response.failed` / `error` turned into ProviderErrors. Codex speaks the same events.
"""

import httpx
import msgspec

from services.session.providers.openai_chat import (
    PartialCall,
    WireError,
    requested,
    wire_error_message,
)
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


class SummaryPart(msgspec.Struct, frozen=True, kw_only=True):
    text: str = ""


class ReasoningItem(msgspec.Struct, frozen=True, kw_only=True):
    summary: list[SummaryPart] = msgspec.field(default_factory=list)


class RawItemEvent(msgspec.Struct, frozen=True, kw_only=True):
    """`response.output_item.done` of a reasoning item: kept as the API sent it, for replay."""

    item: msgspec.Raw


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
RAW_ITEM_EVENT: msgspec.json.Decoder[RawItemEvent] = msgspec.json.Decoder(RawItemEvent)
REASONING_ITEM: msgspec.json.Decoder[ReasoningItem] = msgspec.json.Decoder(ReasoningItem)
ARGUMENTS_PIECE: msgspec.json.Decoder[ArgumentsPiece] = msgspec.json.Decoder(ArgumentsPiece)
RESPONSE_EVENT: msgspec.json.Decoder[ResponseEvent] = msgspec.json.Decoder(ResponseEvent)
ERROR_EVENT: msgspec.json.Decoder[ErrorEvent] = msgspec.json.Decoder(ErrorEvent)


async def read(response: httpx.Response, host: str, on_event: OnEvent) -> ModelReply:
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

    def __init__(self, host: str, on_event: OnEvent, provider: str = "openai_responses") -> None:
        self.host = host
        self.on_event = on_event
        self.provider = provider  # the wire format its reasoning items will be replayed to
        self.reasoning: list[Reasoning] = []
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
                item_event = ITEM_EVENT.decode(data)
                if item_event.item.type == "reasoning" and kind.endswith(".done"):
                    self._reasoning(RAW_ITEM_EVENT.decode(data).item)
                self._item(item_event, is_done=kind.endswith(".done"))
            case "response.reasoning_summary_text.delta" | "response.reasoning_text.delta":
                if piece := TEXT_PIECE.decode(data).delta:
                    self.on_event(ReasoningDelta(text=piece))
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
        if item.name and not call.name:
            self.on_event(CallStarted(name=item.name))
        call.name = item.name or call.name
        if is_done and item.arguments is not None:
            call.arguments = [item.arguments]  # the complete arguments win over the deltas

    def _reasoning(self, item: msgspec.Raw) -> None:
        summary = "\n\n".join(part.text for part in REASONING_ITEM.decode(item).summary)
        raw = bytes(item).decode()
        self.reasoning.append(Reasoning(provider=self.provider, item=raw, summary=summary))

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
        calls = requested(self.calls)
        text = "".join(self.text)
        return ModelReply(text=text, tool_calls=calls, usage=self.usage, reasoning=self.reasoning)


def _usage(wire: WireUsage) -> Usage:
    cached = (wire.input_tokens_details or {}).get("cached_tokens") or 0
    return Usage(
        input=max(0, (wire.input_tokens or 0) - cached),
        cache_read=cached,
        output=wire.output_tokens or 0,
        reasoning=(wire.output_tokens_details or {}).get("reasoning_tokens") or 0,
    )
