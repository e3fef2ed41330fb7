"""A fake Anthropic Messages API (streamed SSE) with a strict script and a tap.

    async with anthropic_api(api_key="sk-ant-test") as server:  # a clean exit runs assert_done()
        server.script(tool_call("shell", {"command": "ls"}), reply("Done."))  # then .requests

Each `POST /v1/messages` consumes the next step, answered with the events the API sends. Requests
are checked as the API checks them (`problem`; roles must also alternate, which the API does not
insist on); one past the script (answered 500) or refused (400) is recorded in `failures`.
"""

import asyncio
import itertools
from collections.abc import Iterable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Annotated, Literal

import msgspec
from aiohttp import web
from msgspec.structs import replace

from tests.kit.scripted_http import ScriptedServer, serving, write_sse

_ENCODER = msgspec.json.Encoder()
_JSON = "application/json"
API_VERSION = "2023-06-01"
ERROR_TYPES = {  # the API's error type per status; other 4xx/5xx: invalid_request/api_error
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
    529: "overloaded_error",
}

# --- the script ---------------------------------------------------------------------------------


class TokenCounts(msgspec.Struct, frozen=True, kw_only=True):
    """The usage a step reports, in Anthropic's terms (input excludes the cached parts)."""

    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0


class ScriptedCall(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    arguments: str  # streamed as is, in `input_json_delta` pieces
    call_id: str | None = None


class Answer(msgspec.Struct, frozen=True, kw_only=True):
    """A message: text (a preamble when calls follow) and tool uses."""

    text: str = ""
    calls: list[ScriptedCall] = []
    usage: TokenCounts | None = None  # None: estimated from the sizes of request and answer
    is_cut: bool = False  # the stream ends before `message_stop`
    error: dict[str, str] | None = None  # an `error` event (type, message) instead of the end
    delay_s: float = 0.0


class HttpError(msgspec.Struct, frozen=True, kw_only=True):
    status: int
    message: str
    error_type: str
    retry_after_s: float | None = None  # sent as a `retry-after` header


Step = Answer | HttpError
Arguments = dict[str, object] | str  # a str is sent as is, malformed JSON included
Delta = Mapping[str, str]


def reply(text: str, *, usage: TokenCounts | None = None, delay_s: float = 0.0) -> Answer:
    """A final answer: stop reason `end_turn`."""
    return Answer(text=text, usage=usage, delay_s=delay_s)


def tool_call(name: str, arguments: Arguments, *, call_id: str | None = None) -> Answer:
    """One tool use; without `call_id` the fake numbers it `toolu_fake_<n>`."""
    text = arguments if isinstance(arguments, str) else msgspec.json.encode(arguments).decode()
    return Answer(calls=[ScriptedCall(name=name, arguments=text, call_id=call_id)])


def tool_calls(*calls: Answer, text: str = "", usage: TokenCounts | None = None) -> Answer:
    """Several tool uses (each from `tool_call`) in one message, after an optional preamble."""
    merged = [scripted for step in calls for scripted in step.calls]
    return Answer(calls=merged, text=text, usage=usage)


def cut_stream(text: str = "half an ans") -> Answer:
    """All of a text answer but its `message_stop`: then the connection just ends."""
    return Answer(text=text, is_cut=True)


def http_error(
    status: int, message: str, *, error_type: str | None = None, retry_after_s: float | None = None
) -> HttpError:
    """A non-2xx answer with Anthropic's error body; the type defaults to the status's."""
    default = ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    kind = error_type or default
    return HttpError(status=status, message=message, error_type=kind, retry_after_s=retry_after_s)


def stream_error(
    error_type: str = "overloaded_error", message: str = "Overloaded", *, text_before: str = ""
) -> Answer:
    """HTTP 200, maybe some text, then an `error` event and the end of the stream."""
    return Answer(text=text_before, error={"type": error_type, "message": message})


# --- the request, as the API reads it -------------------------------------------------------------


class Strict(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The API refuses fields it does not know ("Extra inputs are not permitted")."""


class CacheControl(Strict, frozen=True, kw_only=True):
    type: Literal["ephemeral"]
    ttl: Literal["5m", "1h"] | None = None


class Block(Strict, frozen=True, kw_only=True, tag_field="type"):
    cache_control: CacheControl | None = None


class TextBlock(Block, frozen=True, kw_only=True, tag="text"):
    text: str


class ToolUseBlock(Block, frozen=True, kw_only=True, tag="tool_use"):
    call_id: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]+$")] = msgspec.field(name="id")
    name: str
    input: dict[str, object]


class ToolResultBlock(Block, frozen=True, kw_only=True, tag="tool_result"):
    tool_use_id: str
    content: str | list[TextBlock] = ""
    is_error: bool = False


ContentBlock = TextBlock | ToolUseBlock | ToolResultBlock


class WireMessage(Strict, frozen=True, kw_only=True):
    role: Literal["user", "assistant"]
    content: str | list[ContentBlock]

    @property
    def blocks(self) -> list[ContentBlock]:
        return [TextBlock(text=self.content)] if isinstance(self.content, str) else self.content


class WireTool(Strict, frozen=True, kw_only=True):
    name: str
    description: str = ""
    input_schema: dict[str, object]
    cache_control: CacheControl | None = None


class MessagesBody(Strict, frozen=True, kw_only=True):
    model: str
    max_tokens: int
    messages: list[WireMessage]
    system: str | list[TextBlock] = ""
    tools: list[WireTool] = []
    stream: bool = False
    tool_choice: dict[str, object] | None = None  # accepted by the API; the fake ignores them
    thinking: dict[str, object] | None = None


class MessagesRequest(msgspec.Struct, frozen=True, kw_only=True):
    """One request as it crossed the wire."""

    headers: dict[str, str]  # names lower-cased
    body: dict[str, object]  # the JSON body, whole
    typed: MessagesBody  # the same body, typed

    @property
    def roles(self) -> list[str]:
        return [message.role for message in self.typed.messages]

    @property
    def tool_uses(self) -> list[ToolUseBlock]:
        return [b for m in self.typed.messages for b in m.blocks if isinstance(b, ToolUseBlock)]

    @property
    def tool_results(self) -> list[ToolResultBlock]:
        return [b for m in self.typed.messages for b in m.blocks if isinstance(b, ToolResultBlock)]


_RAW_BODY: msgspec.json.Decoder[dict[str, object]] = msgspec.json.Decoder(dict[str, object])
_MESSAGES_BODY: msgspec.json.Decoder[MessagesBody] = msgspec.json.Decoder(MessagesBody)


def problem(headers: dict[str, str], body: MessagesBody) -> str:
    """What the API would answer 400 for, or "" (the fake also insists on alternating roles)."""
    if headers.get("anthropic-version") != API_VERSION:
        return f"anthropic-version: header must be {API_VERSION!r}"
    if not body.stream:
        return "the fake answers only `stream: true`"
    if not body.messages or body.messages[0].role != "user":
        return "messages: the first message must use the user role"
    for previous, message in itertools.pairwise([None, *body.messages, None]):
        found = _turn_problem(previous, message)
        if found:
            return found
    system = [] if isinstance(body.system, str) else body.system
    blocks = [block for message in body.messages for block in message.blocks]
    texts = [body.system] if isinstance(body.system, str) else []
    texts += [block.text for block in [*system, *blocks] if isinstance(block, TextBlock)]
    if any(not text.strip() for text in texts):
        return "messages: text content blocks must contain non-whitespace text"
    markers = sum(item.cache_control is not None for item in [*system, *blocks, *body.tools])
    if markers > 4:
        return f"A maximum of 4 blocks with cache_control may be provided. Found {markers}."
    return ""


def _turn_problem(previous: WireMessage | None, message: WireMessage | None) -> str:
    """Tool results must answer exactly the tool uses just before them, ahead of other blocks."""
    if previous is not None and message is not None and previous.role == message.role:
        return f"messages: roles must alternate, but two {message.role} messages follow each other"
    uses = [b.call_id for b in previous.blocks if isinstance(b, ToolUseBlock)] if previous else []
    blocks = message.blocks if message is not None else []
    results = [b.tool_use_id for b in blocks if isinstance(b, ToolResultBlock)]
    if not all(isinstance(b, ToolResultBlock) for b in blocks[: len(results)]):
        return "messages: tool_result blocks must come first in their message"
    if sorted(uses) != sorted(results):
        return f"messages: tool_use ids {uses} answered by tool_result ids {results}"
    return ""


def _error(step: HttpError) -> web.Response:
    error = {"type": step.error_type, "message": step.message}
    body = _ENCODER.encode({"type": "error", "error": error, "request_id": "req_fake"})
    after = {"retry-after": f"{step.retry_after_s:g}"} if step.retry_after_s is not None else None
    return web.Response(body=body, status=step.status, headers=after, content_type=_JSON)


def _frame(data: Mapping[str, object]) -> bytes:
    return f"event: {data['type']}\n".encode() + b"data: " + _ENCODER.encode(data) + b"\n\n"


def _pieces(text: str, count: int = 3) -> list[str]:
    size = max(1, -(-len(text) // count))
    return [text[start : start + size] for start in range(0, len(text), size)]


def _start(model: str, usage: TokenCounts) -> bytes:
    head = {"id": "msg_fake", "type": "message", "role": "assistant", "model": model, "content": []}
    counts = msgspec.structs.asdict(usage) | {"output_tokens": 1}
    message = head | {"stop_reason": None, "stop_sequence": None, "usage": counts}
    return _frame({"type": "message_start", "message": message})


def _block(index: int, block: Mapping[str, object], deltas: Iterable[Delta]) -> list[bytes]:
    frames = [_frame({"type": "content_block_start", "index": index, "content_block": block})]
    frames += [_frame({"type": "ping"})] if index == 0 else []
    frames += [_frame({"type": "content_block_delta", "index": index, "delta": d}) for d in deltas]
    return [*frames, _frame({"type": "content_block_stop", "index": index})]


def _blocks(answer: Answer) -> list[bytes]:
    frames: list[bytes] = []
    if answer.text:
        texts = ({"type": "text_delta", "text": piece} for piece in _pieces(answer.text))
        frames += _block(0, {"type": "text", "text": ""}, texts)
    for index, call in enumerate(answer.calls, start=1 if answer.text else 0):
        use: dict[str, object] = {
            "type": "tool_use",
            "id": call.call_id,
            "name": call.name,
            "input": {},
        }
        pieces = ["", *_pieces(call.arguments)]  # the API opens with an empty piece
        inputs = ({"type": "input_json_delta", "partial_json": piece} for piece in pieces)
        frames += _block(index, use, inputs)
    return frames


def _sse_answer(model: str, answer: Answer, usage: TokenCounts) -> list[bytes]:
    ending = {
        "type": "message_delta",
        "delta": {"stop_reason": "tool_use" if answer.calls else "end_turn", "stop_sequence": None},
        "usage": {"output_tokens": usage.output_tokens},
    }
    frames, blocks = [_start(model, usage)], _blocks(answer)
    if answer.error is not None:  # the last block never stops
        return [*frames, *blocks[:-1], _frame({"type": "error", "error": answer.error})]
    frames += [*blocks, _frame(ending)]
    return frames if answer.is_cut else [*frames, _frame({"type": "message_stop"})]


class AnthropicServer(ScriptedServer[Step]):
    """`POST /v1/messages` on 127.0.0.1, answered from a script."""

    title = "fake Anthropic server"
    route = "/v1/messages"

    def __init__(self, *, api_key: str | None = None) -> None:
        super().__init__(api_key=api_key)
        self.requests: list[MessagesRequest] = []
        self._numbers = itertools.count(1)

    def error(self, status: int, message: str) -> web.StreamResponse:
        return _error(http_error(status, message))

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        headers = {name.lower(): value for name, value in request.headers.items()}
        try:
            body = _MESSAGES_BODY.decode(raw)
        except msgspec.DecodeError as exc:
            self.failures.append(f"malformed request body: {exc}")
            return _error(http_error(400, f"malformed request body: {exc}"))
        tapped = MessagesRequest(headers=headers, body=_RAW_BODY.decode(raw), typed=body)
        self.requests.append(tapped)
        if self.api_key and headers.get("x-api-key") != self.api_key:
            return _error(http_error(401, "invalid x-api-key"))
        refusal = problem(headers, body)
        if refusal:
            self.failures.append(f"request {len(self.requests)} refused: {refusal}")
            return _error(http_error(400, refusal))
        step = self.next_step(len(self.requests))
        if step is None:
            return _error(http_error(500, "the fake's script has no step left"))
        if isinstance(step, HttpError):
            return _error(step)
        if step.delay_s:
            await asyncio.sleep(step.delay_s)  # simulated latency of the provider
        answer, usage = self._settle(step, len(raw))
        return await write_sse(request, _sse_answer(body.model, answer, usage))

    def _settle(self, step: Answer, body_bytes: int) -> tuple[Answer, TokenCounts]:
        """The step with every call id set (`toolu_fake_<n>` by default), and its usage."""
        ids = self._numbers
        calls = [replace(c, call_id=c.call_id or f"toolu_fake_{next(ids)}") for c in step.calls]
        out = len(_ENCODER.encode(calls)) + len(step.text)  # usage: about 4 bytes a token
        guess = TokenCounts(input_tokens=1 + body_bytes // 4, output_tokens=1 + out // 4)
        return replace(step, calls=calls), step.usage or guess


def anthropic_api(api_key: str | None = None) -> AbstractAsyncContextManager[AnthropicServer]:
    """A running fake; on a clean exit, `assert_done()` checks the script was followed."""
    return serving(AnthropicServer(api_key=api_key))
