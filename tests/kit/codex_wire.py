"""What the fake Codex backend (`codex_api`) reads and writes: the `response.create` frame as the
backend checks it, the OAuth refresh body, the Responses events it streams, and unsigned JWTs."""

import base64
import itertools
from typing import Literal

import msgspec

from tests.kit.openai_responses_api import (
    FunctionCall,
    FunctionCallOutput,
    FunctionTool,
    Message,
    ScriptedCall,
    TokenCounts,
    usage_json,
)
from tests.kit.scripted_http import pieces

ACCOUNT_CLAIM = "https://api.openai.com/auth"
_ENCODER = msgspec.json.Encoder()


def jwt(claims: dict[str, object]) -> str:
    """An unsigned-looking JWT carrying `claims`, shaped as OpenAI's auth tokens are."""

    def part(value: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(_ENCODER.encode(value)).rstrip(b"=").decode()

    return f"{part({'alg': 'RS256', 'typ': 'JWT'})}.{part(claims)}.c2lnbmF0dXJl"


# --- what the backend takes ---------------------------------------------------------------------


class Strict(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A field the backend does not know is refused, as it refuses one."""


class SummaryText(Strict, frozen=True, kw_only=True):
    type: Literal["summary_text"]
    text: str


class ReasoningInput(Strict, frozen=True, kw_only=True, tag_field="type", tag="reasoning"):
    """A reasoning item replayed as the backend sent it (its encrypted content included)."""

    summary: list[SummaryText]
    encrypted_content: str
    reasoning_id: str | None = msgspec.field(default=None, name="id")
    content: list[dict[str, object]] | None = None


Item = Message | FunctionCall | FunctionCallOutput | ReasoningInput


class ReasoningParams(Strict, frozen=True, kw_only=True):
    effort: Literal["minimal", "low", "medium", "high", "xhigh"] | None = None
    summary: Literal["auto", "concise", "detailed"] | None = None


class CreateFrame(Strict, frozen=True, kw_only=True):
    """The first frame of a socket; `max_output_tokens` and cache markers are unknown here."""

    type: Literal["response.create"]
    model: str
    instructions: str
    input: list[Item]
    tools: list[FunctionTool]
    tool_choice: Literal["auto"]
    parallel_tool_calls: bool
    store: Literal[False]  # the subscription backend keeps nothing
    stream: Literal[True]
    reasoning: ReasoningParams | None = None
    include: list[Literal["reasoning.encrypted_content"]] = []
    prompt_cache_key: str | None = None
    service_tier: Literal["auto", "default", "flex", "priority"] | None = None

    def __post_init__(self) -> None:  # the backend's check: a decode error, hence a refusal
        called = {item.call_id for item in self.input if isinstance(item, FunctionCall)}
        for item in self.input:
            if isinstance(item, FunctionCallOutput) and item.call_id not in called:
                raise ValueError(f"No tool call found for function call output {item.call_id!r}")


class CodexRequest(msgspec.Struct, frozen=True, kw_only=True):
    """One socket's upgrade headers (lower-cased) and its `response.create` frame."""

    headers: dict[str, str]
    frame: dict[str, object]  # the frame's JSON, whole
    typed: CreateFrame

    @property
    def function_calls(self) -> list[FunctionCall]:
        return [item for item in self.typed.input if isinstance(item, FunctionCall)]

    @property
    def function_outputs(self) -> list[FunctionCallOutput]:
        return [item for item in self.typed.input if isinstance(item, FunctionCallOutput)]

    @property
    def reasoning(self) -> list[ReasoningInput]:
        return [item for item in self.typed.input if isinstance(item, ReasoningInput)]

    @property
    def last_user_text(self) -> str | None:
        users = [i.text for i in self.typed.input if isinstance(i, Message) and i.role == "user"]
        return users[-1] if users else None


class RefreshBody(Strict, frozen=True, kw_only=True):
    """`POST /oauth/token` as the Codex CLI sends it."""

    client_id: str
    grant_type: str
    refresh_token: str
    scope: str


CREATE_FRAME: msgspec.json.Decoder[CreateFrame] = msgspec.json.Decoder(CreateFrame)
RAW_FRAME: msgspec.json.Decoder[dict[str, object]] = msgspec.json.Decoder(dict[str, object])
REFRESH_BODY: msgspec.json.Decoder[RefreshBody] = msgspec.json.Decoder(RefreshBody)


# --- what the backend streams -------------------------------------------------------------------


class Events:
    """The events of one response, each numbered as it is made; one text frame each."""

    def __init__(self, response: dict[str, object], numbers: "itertools.count[int]") -> None:
        self.response = response
        self.numbers = numbers  # the server's: ids stay unique across responses
        self.frames: list[str] = []
        self.output: list[dict[str, object]] = []

    def emit(self, kind: str, fields: dict[str, object]) -> None:
        event = {"type": kind, "sequence_number": len(self.frames), **fields}
        self.frames.append(_ENCODER.encode(event).decode())

    def start(self) -> None:
        self.emit("response.created", {"response": self.response})
        self.emit("response.in_progress", {"response": self.response})

    def reasoning(self, summary: str) -> str:
        """A reasoning item with its summary streamed; its encrypted content is returned."""
        index, item_id = len(self.output), f"rs_{next(self.numbers)}"
        sealed = f"gAAAAB-sealed-{item_id}"
        item: dict[str, object] = {"id": item_id, "type": "reasoning", "summary": []}
        self.emit("response.output_item.added", {"output_index": index, "item": item})
        at = {"item_id": item_id, "output_index": index, "summary_index": 0}
        part = {"type": "summary_text", "text": summary}
        self.emit("response.reasoning_summary_part.added", {**at, "part": {**part, "text": ""}})
        for piece in pieces(summary):
            self.emit("response.reasoning_summary_text.delta", {**at, "delta": piece})
        self.emit("response.reasoning_summary_text.done", {**at, "text": summary})
        self.emit("response.reasoning_summary_part.done", {**at, "part": part})
        self._done(index, {**item, "summary": [part], "encrypted_content": sealed})
        return sealed

    def message(self, text: str, *, is_cut: bool = False) -> None:
        index, item_id = len(self.output), f"msg_{next(self.numbers)}"
        at: dict[str, object] = {"item_id": item_id, "output_index": index, "content_index": 0}
        part = {"type": "output_text", "annotations": [], "text": text}
        item = {"id": item_id, "type": "message", "role": "assistant", "content": []}
        self.emit("response.output_item.added", {"output_index": index, "item": item})
        self.emit("response.content_part.added", {**at, "part": {**part, "text": ""}})
        for piece in pieces(text):
            self.emit("response.output_text.delta", {**at, "delta": piece})
        if is_cut:
            return
        self.emit("response.output_text.done", {**at, "text": text})
        self.emit("response.content_part.done", {**at, "part": part})
        self._done(index, {**item, "status": "completed", "content": [part]})

    def call(self, call: ScriptedCall) -> None:
        index, item_id = len(self.output), f"fc_{next(self.numbers)}"
        call_id = call.call_id or f"call_{next(self.numbers)}"
        at: dict[str, object] = {"item_id": item_id, "output_index": index}
        item: dict[str, object] = {"id": item_id, "type": "function_call", "arguments": ""}
        item |= {"status": "in_progress", "call_id": call_id, "name": call.name}
        self.emit("response.output_item.added", {"output_index": index, "item": item})
        for piece in pieces(call.arguments):
            self.emit("response.function_call_arguments.delta", {**at, "delta": piece})
        self.emit("response.function_call_arguments.done", {**at, "arguments": call.arguments})
        self._done(index, {**item, "status": "completed", "arguments": call.arguments})

    def _done(self, index: int, item: dict[str, object]) -> None:
        self.output.append(item)
        self.emit("response.output_item.done", {"output_index": index, "item": item})

    def complete(self, usage: TokenCounts) -> None:
        response = {**self.response, "status": "completed", "output": self.output}
        self.emit("response.completed", {"response": response | {"usage": usage_json(usage)}})


def wrapped_error(status: int | None, code: str | None, message: str) -> str:
    """Codex's `error` event: the HTTP status the request would have had, and the API error."""
    kind = "server_error" if status is None or status >= 500 else "invalid_request_error"
    error = {"type": kind, "code": code, "message": message}
    event: dict[str, object] = {"type": "error", "error": error}
    if status is not None:
        event["status"] = status
    return _ENCODER.encode(event).decode()
