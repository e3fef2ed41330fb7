"""A fake Anthropic Messages API (streamed SSE) with a strict script and a tap.

    async with anthropic_api(api_key="sk-ant-test") as server:  # a clean exit runs assert_done()
        server.script(tool_call("shell", {"command": "ls"}), reply("Done."))  # then .requests

Each `POST /v1/messages` consumes the next step, answered with the events the API sends. Requests
are checked as the API checks them (`problem`; roles must also alternate, which the API does not
insist on); one past the script (answered 500) or refused (400) is recorded in `failures`.
`GET /v1/models` lists `models` (outside the script; each request's headers go to `listings`).
"""

import asyncio
import itertools
from collections.abc import Iterable, Mapping
from contextlib import AbstractAsyncContextManager

import msgspec
from aiohttp import web
from msgspec.structs import replace

from tests.kit.anthropic_wire import (
    API_VERSION,
    MESSAGES_BODY,
    RAW_BODY,
    MessagesBody,
    MessagesRequest,
    ThinkingBlock,
    problem,
)
from tests.kit.scripted_http import Handler, ScriptedServer, pieces, serving, write_sse

_ENCODER = msgspec.json.Encoder()
_JSON = "application/json"
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
    thinking: str = ""  # a signed thinking block first, when the request enables thinking


class HttpError(msgspec.Struct, frozen=True, kw_only=True):
    status: int
    message: str
    error_type: str
    retry_after_s: float | None = None  # sent as a `retry-after` header


Step = Answer | HttpError
Arguments = dict[str, object] | str  # a str is sent as is, malformed JSON included
Delta = Mapping[str, str]


def reply(
    text: str, *, usage: TokenCounts | None = None, delay_s: float = 0.0, thinking: str = ""
) -> Answer:
    """A final answer: stop reason `end_turn`."""
    return Answer(text=text, usage=usage, delay_s=delay_s, thinking=thinking)


def tool_call(name: str, arguments: Arguments, *, call_id: str | None = None) -> Answer:
    """One tool use; without `call_id` the fake numbers it `toolu_fake_<n>`."""
    text = arguments if isinstance(arguments, str) else msgspec.json.encode(arguments).decode()
    return Answer(calls=[ScriptedCall(name=name, arguments=text, call_id=call_id)])


def tool_calls(
    *calls: Answer, text: str = "", usage: TokenCounts | None = None, thinking: str = ""
) -> Answer:
    """Several tool uses (each from `tool_call`) in one message, after an optional preamble."""
    merged = [scripted for step in calls for scripted in step.calls]
    return Answer(calls=merged, text=text, usage=usage, thinking=thinking)


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


def _error(step: HttpError) -> web.Response:
    error = {"type": step.error_type, "message": step.message}
    body = _ENCODER.encode({"type": "error", "error": error, "request_id": "req_fake"})
    after = {"retry-after": f"{step.retry_after_s:g}"} if step.retry_after_s is not None else None
    return web.Response(body=body, status=step.status, headers=after, content_type=_JSON)


def _frame(data: Mapping[str, object]) -> bytes:
    return f"event: {data['type']}\n".encode() + b"data: " + _ENCODER.encode(data) + b"\n\n"


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


def _blocks(answer: Answer, signature: str) -> list[bytes]:
    frames: list[bytes] = []
    if signature:
        deltas = [
            {"type": "thinking_delta", "thinking": piece} for piece in pieces(answer.thinking)
        ]
        deltas.append({"type": "signature_delta", "signature": signature})
        frames += _block(0, {"type": "thinking", "thinking": "", "signature": ""}, deltas)
    first = 1 if signature else 0
    if answer.text:
        texts = ({"type": "text_delta", "text": piece} for piece in pieces(answer.text))
        frames += _block(first, {"type": "text", "text": ""}, texts)
    for index, call in enumerate(answer.calls, start=first + (1 if answer.text else 0)):
        use: dict[str, object] = {
            "type": "tool_use",
            "id": call.call_id,
            "name": call.name,
            "input": {},
        }
        parts = ["", *pieces(call.arguments)]  # the API opens with an empty piece
        inputs = ({"type": "input_json_delta", "partial_json": piece} for piece in parts)
        frames += _block(index, use, inputs)
    return frames


def _sse_answer(model: str, answer: Answer, usage: TokenCounts, signature: str) -> list[bytes]:
    ending = {
        "type": "message_delta",
        "delta": {"stop_reason": "tool_use" if answer.calls else "end_turn", "stop_sequence": None},
        "usage": {"output_tokens": usage.output_tokens},
    }
    frames, blocks = [_start(model, usage)], _blocks(answer, signature)
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
        self.signatures: dict[str, str] = {}  # each signature the fake issued → its thinking
        self.models: list[str] = []  # the ids `GET /v1/models` lists
        self.listings: list[dict[str, str]] = []  # the headers of each `GET /v1/models`
        self._numbers = itertools.count(1)

    def error(self, status: int, message: str) -> web.StreamResponse:
        return _error(http_error(status, message))

    def read_routes(self) -> list[tuple[str, Handler]]:
        return [("/v1/models", self._list_models)]

    async def _list_models(self, request: web.Request) -> web.StreamResponse:
        """The model list as the API answers it: one page, newest first."""
        headers = {name.lower(): value for name, value in request.headers.items()}
        self.listings.append(headers)
        if self.api_key and headers.get("x-api-key") != self.api_key:
            return _error(http_error(401, "invalid x-api-key"))
        if headers.get("anthropic-version") != API_VERSION:
            return _error(http_error(400, f"anthropic-version: header must be {API_VERSION!r}"))
        listed = [
            {
                "type": "model",
                "id": model,
                "display_name": model,
                "created_at": "2025-05-14T00:00:00Z",
            }
            for model in self.models
        ]
        first, last = (self.models[0], self.models[-1]) if self.models else (None, None)
        page = {"data": listed, "has_more": False, "first_id": first, "last_id": last}
        return web.Response(body=_ENCODER.encode(page), content_type=_JSON)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        headers = {name.lower(): value for name, value in request.headers.items()}
        try:
            body = MESSAGES_BODY.decode(raw)
        except msgspec.DecodeError as exc:
            self.failures.append(f"malformed request body: {exc}")
            return _error(http_error(400, f"malformed request body: {exc}"))
        tapped = MessagesRequest(headers=headers, body=RAW_BODY.decode(raw), typed=body)
        self.requests.append(tapped)
        if self.api_key and headers.get("x-api-key") != self.api_key:
            return _error(http_error(401, "invalid x-api-key"))
        refusal = problem(headers, body) or self._forged(body)
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
        signature = ""
        if answer.thinking and body.thinking is not None:
            signature = f"sig_{next(self._numbers)}"
            self.signatures[signature] = answer.thinking
        return await write_sse(request, _sse_answer(body.model, answer, usage, signature))

    def _forged(self, body: MessagesBody) -> str:
        """A thinking block must come back exactly as the fake signed it."""
        for message in body.messages:
            for block in message.blocks:
                if isinstance(block, ThinkingBlock) and (
                    self.signatures.get(block.signature) != block.thinking
                ):
                    return "messages: Invalid `signature` in `thinking` block"
        return ""

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
