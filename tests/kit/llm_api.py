"""A fake OpenAI chat completions server (JSON and SSE) with a strict script and a tap.

    async with llm_api(api_key="sk-test") as server:  # a clean exit runs assert_done()
        server.script(tool_call("shell", {"command": "ls"}), reply("Done."))  # then .requests

Each `POST /v1/chat/completions` consumes the next step. A request past the script (answered 500)
or one the fake cannot decode (answered 400, not tapped) is recorded in `failures`.
`GET /v1/models` lists `models` (outside the script; each request's headers go to `listings`).
"""

import asyncio
import itertools
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Literal

import msgspec
from aiohttp import web

from tests.kit.media_wire import AudioData, ChatFile, ImageUrl
from tests.kit.scripted_http import Handler, ScriptedServer, pieces, serving, write_sse

_ENCODER = msgspec.json.Encoder()
_JSON = "application/json"


class TokenCounts(msgspec.Struct, frozen=True, kw_only=True):
    """The usage a step reports, in OpenAI's terms (cached and reasoning are subsets)."""

    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    cost: float | None = None  # OpenRouter's `usage.cost`, in USD


class ScriptedCall(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    arguments: str  # sent as is
    call_id: str | None = None


class Completion(msgspec.Struct, frozen=True, kw_only=True):
    """An answer: text (a preamble when calls follow) and tool calls."""

    text: str = ""
    calls: list[ScriptedCall] = []
    usage: TokenCounts | None = None  # None: estimated from the sizes of request and answer
    delay_s: float = 0.0
    is_cut: bool = False  # the stream ends after the text: no finish, no `[DONE]`


class HttpError(msgspec.Struct, frozen=True, kw_only=True):
    status: int
    message: str
    retry_after_s: float | None = None  # sent as a `Retry-After` header
    delay_s: float = 0.0


class StreamError(msgspec.Struct, frozen=True, kw_only=True):
    message: str
    text: str = ""  # streamed before the error
    delay_s: float = 0.0


Step = Completion | HttpError | StreamError
Arguments = dict[str, object] | str  # a str is sent as is, malformed JSON included


def reply(text: str, *, usage: TokenCounts | None = None, delay_s: float = 0.0) -> Completion:
    """A final answer: `finish_reason` "stop"."""
    return Completion(text=text, usage=usage, delay_s=delay_s)


def tool_call(
    name: str, arguments: Arguments, *, call_id: str | None = None, delay_s: float = 0.0
) -> Completion:
    """One tool call; without `call_id` the fake numbers it `call_<n>`."""
    text = arguments if isinstance(arguments, str) else msgspec.json.encode(arguments).decode()
    call = ScriptedCall(name=name, arguments=text, call_id=call_id)
    return Completion(calls=[call], delay_s=delay_s)


def tool_calls(
    *calls: Completion, text: str = "", usage: TokenCounts | None = None, delay_s: float = 0.0
) -> Completion:
    """Several calls (each from `tool_call`) in one response, after an optional preamble."""
    merged = [scripted for step in calls for scripted in step.calls]
    return Completion(calls=merged, text=text, usage=usage, delay_s=delay_s)


def http_error(
    status: int, message: str, *, retry_after_s: float | None = None, delay_s: float = 0.0
) -> HttpError:
    """A non-2xx answer with an OpenAI error body."""
    return HttpError(status=status, message=message, retry_after_s=retry_after_s, delay_s=delay_s)


def cut_stream(text: str) -> Completion:
    """The text's chunks, then the connection just ends (no finish_reason, no `[DONE]`)."""
    return Completion(text=text, is_cut=True)


def stream_error(message: str, *, text: str = "", delay_s: float = 0.0) -> StreamError:
    """HTTP 200, then an `error` object inside an SSE chunk (OpenRouter's mid-stream failure)."""
    return StreamError(message=message, text=text, delay_s=delay_s)


def _usage_json(counts: TokenCounts) -> dict[str, object]:
    usage: dict[str, object] = {
        "prompt_tokens": counts.prompt_tokens,
        "completion_tokens": counts.completion_tokens,
        "total_tokens": counts.prompt_tokens + counts.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": counts.cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": counts.reasoning_tokens},
    }
    if counts.cost is not None:
        usage["cost"] = counts.cost
    return usage


def _error(status: int, message: str, retry_after_s: float | None = None) -> web.Response:
    kind = "server_error" if status >= 500 else "invalid_request_error"
    code = {401: "invalid_api_key", 429: "rate_limit_exceeded"}.get(status)
    error = {"message": message, "type": kind, "param": None, "code": code}
    return _json({"error": error}, status, retry_after_s)


def _call_json(call: ScriptedCall, arguments: str) -> dict[str, object]:
    function = {"name": call.name, "arguments": arguments}
    return {"id": call.call_id, "type": "function", "function": function}


def _json_completion(model: str, answer: Completion, usage: TokenCounts) -> dict[str, object]:
    message: dict[str, object] = {"role": "assistant", "content": answer.text or None}
    if answer.calls:
        message["tool_calls"] = [_call_json(call, call.arguments) for call in answer.calls]
    finish = "tool_calls" if answer.calls else "stop"
    choice = {"index": 0, "message": message, "finish_reason": finish}
    return {**_envelope(model, "chat.completion"), "choices": [choice], "usage": _usage_json(usage)}


def _envelope(model: str, kind: str) -> dict[str, object]:
    return {"id": "chatcmpl-fake", "object": kind, "created": int(time.time()), "model": model}


def _delta(delta: dict[str, object], finish_reason: str | None = None) -> dict[str, object]:
    return {"choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]}


def _frames(model: str, chunks: list[dict[str, object]], *, include_usage: bool) -> list[bytes]:
    """SSE `data:` frames; with usage requested, every other chunk carries `usage: null`."""
    head = _envelope(model, "chat.completion.chunk")
    extra: dict[str, object] = {"usage": None} if include_usage else {}
    return [b"data: " + _ENCODER.encode({**head, **extra, **chunk}) + b"\n\n" for chunk in chunks]


def _sse_answer(model: str, answer: Completion, usage: TokenCounts | None) -> list[bytes]:
    """The answer's chunks; the usage chunk only when the request asked for it."""
    chunks = [_delta({"role": "assistant", "content": ""})]
    chunks += [_delta({"content": piece}) for piece in pieces(answer.text)]
    if answer.is_cut:
        return _frames(model, chunks, include_usage=usage is not None)
    for index, call in enumerate(answer.calls):
        chunks.append(_delta({"tool_calls": [{"index": index, **_call_json(call, "")}]}))
        chunks += [
            _delta({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
            for piece in pieces(call.arguments)
        ]
    chunks.append(_delta({}, "tool_calls" if answer.calls else "stop"))
    if usage is not None:
        chunks.append({"choices": [], "usage": _usage_json(usage)})
    return [*_frames(model, chunks, include_usage=usage is not None), b"data: [DONE]\n\n"]


def _sse_stream_error(model: str, text: str, message: str) -> list[bytes]:
    """OpenRouter's mid-stream failure: an `error` beside a choice finished with "error"."""
    chunks = [_delta({"role": "assistant", "content": ""})]
    chunks += [_delta({"content": piece}) for piece in pieces(text)]
    failed = _delta({"content": ""}, "error")
    chunks.append({**failed, "error": {"code": "server_error", "message": message}})
    return _frames(model, chunks, include_usage=False)


class ContentPart(msgspec.Struct, frozen=True, kw_only=True):
    type: str
    text: str | None = None
    image_url: ImageUrl | None = None  # `image_url`
    file: ChatFile | None = None  # `file`
    input_audio: AudioData | None = None  # `input_audio`


class WireFunction(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    arguments: str


class WireToolCall(msgspec.Struct, frozen=True, kw_only=True):
    call_id: str = msgspec.field(name="id")
    type: Literal["function"]
    function: WireFunction


class WireMessage(msgspec.Struct, frozen=True, kw_only=True):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    tool_calls: list[WireToolCall] | None = None
    tool_call_id: str | None = None

    @property
    def text(self) -> str:
        """The content as text: a string as is, text parts joined."""
        if isinstance(self.content, list):
            return "".join(part.text or "" for part in self.content if part.type == "text")
        return self.content or ""


class WireToolFunction(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    description: str = ""
    parameters: dict[str, object] = {}


class WireTool(msgspec.Struct, frozen=True, kw_only=True):
    type: Literal["function"]
    function: WireToolFunction


class StreamOptions(msgspec.Struct, frozen=True, kw_only=True):
    include_usage: bool = False


class ChatBody(msgspec.Struct, frozen=True, kw_only=True):
    """The fields of a request body the fake understands; others stay in `ChatRequest.body`."""

    model: str
    messages: list[WireMessage]
    tools: list[WireTool] = []
    tool_choice: str | dict[str, object] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = None


class ChatRequest(msgspec.Struct, frozen=True, kw_only=True):
    """One request as it crossed the wire."""

    headers: dict[str, str]  # names lower-cased
    body: dict[str, object]  # the JSON body, whole
    chat: ChatBody  # the same body, typed

    @property
    def messages(self) -> list[WireMessage]:
        return self.chat.messages

    @property
    def tools(self) -> list[str]:
        return [tool.function.name for tool in self.chat.tools]

    @property
    def tool_messages(self) -> list[WireMessage]:
        """The role=tool messages: `tool_call_id` and `content` (or `.text`)."""
        return [message for message in self.chat.messages if message.role == "tool"]

    @property
    def last_user_text(self) -> str | None:
        users = [message for message in self.chat.messages if message.role == "user"]
        return users[-1].text if users else None


_RAW_BODY: msgspec.json.Decoder[dict[str, object]] = msgspec.json.Decoder(dict[str, object])
_CHAT_BODY: msgspec.json.Decoder[ChatBody] = msgspec.json.Decoder(ChatBody)


class OpenAIChatServer(ScriptedServer[Step]):
    """`POST /v1/chat/completions` on 127.0.0.1, answered from a script."""

    title = "fake OpenAI server"
    route = "/v1/chat/completions"

    def __init__(self, *, api_key: str | None = None) -> None:
        super().__init__(api_key=api_key)
        self.requests: list[ChatRequest] = []
        self.busy_s: list[float] = []  # the time each answered request took here (model time)
        self.models: list[str] = []  # the ids `GET /v1/models` lists
        self.listings: list[dict[str, str]] = []  # the headers of each `GET /v1/models`
        self._always: Step | None = None
        self._responder: Callable[[ChatRequest], Step] | None = None
        self._numbers = itertools.count(1)

    def always(self, step: Step) -> None:
        """Answer every request past the script with `step`, without counting it a failure."""
        self._always = step

    def respond_with(self, responder: Callable[[ChatRequest], Step]) -> None:
        """Answer every request with what `responder` makes of it (a model that reads), instead
        of a script: for runs too long and too disordered to script, such as the chaos suite."""
        self._responder = responder

    def next_step(self, number: int) -> Step | None:
        if self._steps or self._always is None:
            return super().next_step(number)
        return self._always

    def error(self, status: int, message: str) -> web.StreamResponse:
        return _error(status, message)

    def read_routes(self) -> list[tuple[str, Handler]]:
        return [("/v1/models", self._list_models)]

    async def _list_models(self, request: web.Request) -> web.StreamResponse:
        """The model list as OpenAI answers it (a bearer key, when the fake has one)."""
        headers = {name.lower(): value for name, value in request.headers.items()}
        self.listings.append(headers)
        if self.api_key and headers.get("authorization") != f"Bearer {self.api_key}":
            return _error(401, "Incorrect API key provided.")
        listed = [
            {"id": model, "object": "model", "created": 1_700_000_000, "owned_by": "system"}
            for model in self.models
        ]
        return _json({"object": "list", "data": listed})

    async def handle(self, request: web.Request) -> web.StreamResponse:
        started = asyncio.get_running_loop().time()
        raw = await request.read()
        try:
            tapped = ChatRequest(
                headers={name.lower(): value for name, value in request.headers.items()},
                body=_RAW_BODY.decode(raw),
                chat=_CHAT_BODY.decode(raw),
            )
        except msgspec.DecodeError as exc:
            self.failures.append(f"malformed request body: {exc}")
            return _error(400, f"malformed request body: {exc}")
        self.requests.append(tapped)
        if self.api_key and tapped.headers.get("authorization") != f"Bearer {self.api_key}":
            return _error(401, "Incorrect API key provided.")
        if self._responder is not None:
            step: Step | None = self._responder(tapped)
        else:
            step = self.next_step(len(self.requests))
        if step is None:
            return _error(500, "the fake's script has no step left")
        if step.delay_s:
            await asyncio.sleep(step.delay_s)  # simulated latency of the provider
        response = await self._answer(request, step, tapped.chat, len(raw))
        self.busy_s.append(asyncio.get_running_loop().time() - started)
        return response

    async def _answer(
        self, request: web.Request, step: Step, chat: ChatBody, body_bytes: int
    ) -> web.StreamResponse:
        match step:
            case HttpError():
                return _error(step.status, step.message, step.retry_after_s)
            case StreamError() if chat.stream:
                frames = _sse_stream_error(chat.model, step.text, step.message)
                return await write_sse(request, frames)
            case StreamError():
                return _json({"error": {"code": 502, "message": step.message}})
            case Completion():
                answer, usage = self._settle(step, body_bytes)
                if not chat.stream:
                    return _json(_json_completion(chat.model, answer, usage))
                wants_usage = chat.stream_options is not None and chat.stream_options.include_usage
                frames = _sse_answer(chat.model, answer, usage if wants_usage else None)
                return await write_sse(request, frames)

    def _settle(self, step: Completion, body_bytes: int) -> tuple[Completion, TokenCounts]:
        """The step with every call id set (`call_<n>` by default), and its usage."""
        calls = [
            msgspec.structs.replace(call, call_id=call.call_id or f"call_{next(self._numbers)}")
            for call in step.calls
        ]
        output_chars = len(step.text) + sum(len(call.arguments) for call in calls)
        usage = step.usage or TokenCounts(
            prompt_tokens=max(1, body_bytes // 4), completion_tokens=max(1, output_chars // 4)
        )
        return msgspec.structs.replace(step, calls=calls), usage


def _json(value: object, status: int = 200, retry_after_s: float | None = None) -> web.Response:
    headers = {"Retry-After": f"{retry_after_s:g}"} if retry_after_s is not None else None
    body = _ENCODER.encode(value)
    return web.Response(body=body, status=status, headers=headers, content_type=_JSON)


def llm_api(api_key: str | None = None) -> AbstractAsyncContextManager[OpenAIChatServer]:
    """A running fake; on a clean exit, `assert_done()` checks the script was followed."""
    return serving(OpenAIChatServer(api_key=api_key))
