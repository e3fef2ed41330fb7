"""A fake OpenAI Responses API server (streamed, SSE) with a strict script and a tap.

    async with responses_api(api_key="sk-test") as server:  # a clean exit runs assert_done()
        server.script(tool_call("shell", {"command": "ls"}), reply("Done."))  # then .requests

Each `POST /v1/responses` consumes the next step and streams the real API's events, numbered:
`response.created`, `.in_progress`, per output item `.output_item.added`, text or argument deltas
and their `.done`, `.output_item.done`, then `response.completed` with usage. A body the API would
refuse (an unknown parameter, `input_text` in an assistant message, an output for a call not in
the input) is answered 400, recorded in `failures` and not tapped; a request past the script is
answered 500 and recorded there too.
"""

import itertools
import time
from contextlib import AbstractAsyncContextManager
from typing import Literal

import msgspec
from aiohttp import web

from tests.kit.media_wire import ResponsesMedia
from tests.kit.scripted_http import ScriptedServer, pieces, serving, write_sse

_ENCODER = msgspec.json.Encoder()
_ECHOED = ("instructions", "max_output_tokens", "parallel_tool_calls", "store", "tool_choice")


class TokenCounts(msgspec.Struct, frozen=True, kw_only=True):
    """The usage a step reports, in the Responses API's terms (cached and reasoning are subsets)."""

    input_tokens: int
    output_tokens: int
    cached_tokens: int = 0
    reasoning_tokens: int = 0


class ScriptedCall(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    arguments: str  # sent as is
    call_id: str | None = None


class Answer(msgspec.Struct, frozen=True, kw_only=True):
    """A completed response: a message (a preamble when calls follow) and function calls."""

    text: str = ""
    calls: list[ScriptedCall] = []
    usage: TokenCounts | None = None  # None: estimated from the sizes of request and answer
    reasoning: str = ""  # a reasoning item's summary, sent first (encrypted content if included)


class HttpError(msgspec.Struct, frozen=True, kw_only=True):
    status: int
    message: str
    code: str | None = None
    retry_after_s: float | None = None  # sent as a `Retry-After` header


class Broken(msgspec.Struct, frozen=True, kw_only=True):
    """HTTP 200, then `failed`: any text, and `response.failed` with `code` and `message`;
    `error`: an `error` event; `cut`: text deltas, then the stream ends unfinished."""

    kind: Literal["failed", "error", "cut"]
    message: str = ""
    code: str | int | None = None  # some compatible servers send an HTTP status
    text: str = ""


Step = Answer | HttpError | Broken
Arguments = dict[str, object] | str  # a str is sent as is, malformed JSON included


def reply(text: str, *, usage: TokenCounts | None = None, reasoning: str = "") -> Answer:
    return Answer(text=text, usage=usage, reasoning=reasoning)


def tool_call(name: str, arguments: Arguments, *, call_id: str | None = None) -> Answer:
    """One function call; without `call_id` the fake numbers it `call_<n>`."""
    text = arguments if isinstance(arguments, str) else msgspec.json.encode(arguments).decode()
    return Answer(calls=[ScriptedCall(name=name, arguments=text, call_id=call_id)])


def tool_calls(
    *calls: Answer, text: str = "", usage: TokenCounts | None = None, reasoning: str = ""
) -> Answer:
    """Several calls (each from `tool_call`) in one response, after an optional preamble."""
    scripted = [call for step in calls for call in step.calls]
    return Answer(calls=scripted, text=text, usage=usage, reasoning=reasoning)


def http_error(
    status: int, message: str, *, code: str | None = None, retry_after_s: float | None = None
) -> HttpError:
    return HttpError(status=status, message=message, code=code, retry_after_s=retry_after_s)


# --- what the fake understands of a request -----------------------------------------------------


class _Typed(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """Base of the parts and items, tagged by `type` as on the wire."""


class InputText(_Typed, frozen=True, kw_only=True, tag="input_text"):
    text: str


class OutputText(_Typed, frozen=True, kw_only=True, tag="output_text"):
    text: str
    annotations: list[object] = []


class Message(_Typed, frozen=True, kw_only=True, tag="message"):
    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[InputText | OutputText | ResponsesMedia]

    @property
    def text(self) -> str:
        content = self.content
        return content if isinstance(content, str) else "".join(p.text for p in content)

    def __post_init__(self) -> None:  # the API's check: a decode error, hence a 400
        if self.role == "assistant" and any(isinstance(p, InputText) for p in self.content):
            raise ValueError("Invalid value: 'input_text'. Supported values: 'output_text'.")


class FunctionCall(_Typed, frozen=True, kw_only=True, tag="function_call"):
    call_id: str
    name: str
    arguments: str


class FunctionCallOutput(_Typed, frozen=True, kw_only=True, tag="function_call_output"):
    call_id: str
    output: str


class SummaryText(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    type: Literal["summary_text"]
    text: str


class ReasoningInput(_Typed, frozen=True, kw_only=True, tag="reasoning"):
    """A reasoning item replayed; without storage the API needs its encrypted content."""

    id: str
    summary: list[SummaryText]
    encrypted_content: str | None = None
    status: str | None = None


Item = Message | FunctionCall | FunctionCallOutput | ReasoningInput


class ReasoningParam(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    effort: Literal["minimal", "low", "medium", "high", "xhigh"] | None = None
    summary: Literal["auto", "concise", "detailed"] | None = None


class FunctionTool(_Typed, frozen=True, kw_only=True, tag="function"):
    name: str
    description: str | None = None
    parameters: dict[str, object] = {}


class WebSearchTool(_Typed, frozen=True, kw_only=True, tag="web_search"):
    """The built-in web search tool."""


class ResponsesBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A request body; a parameter the fake does not know is refused, as the API refuses one."""

    model: str
    input: list[Item]  # a bare string is valid too, but the fake takes items only
    stream: Literal[True]  # the fake streams only
    instructions: str | None = None
    tools: list[FunctionTool | WebSearchTool] = []
    tool_choice: str | dict[str, object] | None = None
    parallel_tool_calls: bool | None = None
    store: bool | None = None
    max_output_tokens: int | None = None
    service_tier: Literal["auto", "default", "flex", "priority", "scale"] | None = None
    prompt_cache_key: str | None = None
    reasoning: ReasoningParam | None = None
    include: list[Literal["reasoning.encrypted_content"]] = []

    def __post_init__(self) -> None:  # the API's check: a decode error, hence a 400
        for item in self.input:
            if isinstance(item, ReasoningInput) and not item.encrypted_content and not self.store:
                raise ValueError(f"Item with id {item.id!r} not found (store is false)")
        called = {item.call_id for item in self.input if isinstance(item, FunctionCall)}
        for item in self.input:
            if isinstance(item, FunctionCallOutput) and item.call_id not in called:
                raise ValueError(f"No tool call found for function call output {item.call_id!r}")


class ResponsesRequest(msgspec.Struct, frozen=True, kw_only=True):
    """One request as it crossed the wire."""

    headers: dict[str, str]  # names lower-cased
    body: dict[str, object]  # the JSON body, whole
    typed: ResponsesBody  # the same body, typed

    @property
    def tools(self) -> list[str]:
        return [tool.name for tool in self.typed.tools if isinstance(tool, FunctionTool)]

    @property
    def function_calls(self) -> list[FunctionCall]:
        return [item for item in self.typed.input if isinstance(item, FunctionCall)]

    @property
    def function_outputs(self) -> list[FunctionCallOutput]:
        return [item for item in self.typed.input if isinstance(item, FunctionCallOutput)]

    @property
    def reasoning_items(self) -> list[ReasoningInput]:
        return [item for item in self.typed.input if isinstance(item, ReasoningInput)]

    @property
    def last_user_text(self) -> str | None:
        users = [i.text for i in self.typed.input if isinstance(i, Message) and i.role == "user"]
        return users[-1] if users else None


_RAW_BODY: msgspec.json.Decoder[dict[str, object]] = msgspec.json.Decoder(dict[str, object])
_BODY: msgspec.json.Decoder[ResponsesBody] = msgspec.json.Decoder(ResponsesBody)


# --- what the fake answers ----------------------------------------------------------------------


def usage_json(counts: TokenCounts) -> dict[str, object]:
    return {
        "input_tokens": counts.input_tokens,
        "input_tokens_details": {"cached_tokens": counts.cached_tokens},
        "output_tokens": counts.output_tokens,
        "output_tokens_details": {"reasoning_tokens": counts.reasoning_tokens},
        "total_tokens": counts.input_tokens + counts.output_tokens,
    }


class _Events:
    """The SSE frames of one response, each event numbered as it is made."""

    def __init__(self, response: dict[str, object]) -> None:
        self.response = response  # the response object as `response.created` shows it
        self.frames: list[bytes] = []
        self.output: list[dict[str, object]] = []  # the finished items

    def emit(self, kind: str, fields: dict[str, object]) -> None:
        data = {"type": kind, "sequence_number": len(self.frames), **fields}
        self.frames.append(f"event: {kind}\ndata: ".encode() + _ENCODER.encode(data) + b"\n\n")

    def start(self) -> None:
        self.emit("response.created", {"response": self.response})
        self.emit("response.in_progress", {"response": self.response})

    def message(self, item_id: str, text: str, *, is_cut: bool = False) -> None:
        index = len(self.output)
        at: dict[str, object] = {"item_id": item_id, "output_index": index, "content_index": 0}
        part = {"type": "output_text", "annotations": [], "logprobs": [], "text": text}
        item = {"id": item_id, "type": "message", "status": "in_progress", "content": []}
        item["role"] = "assistant"
        self.emit("response.output_item.added", {"output_index": index, "item": item})
        self.emit("response.content_part.added", {**at, "part": {**part, "text": ""}})
        for piece in pieces(text):
            self.emit("response.output_text.delta", {**at, "delta": piece, "logprobs": []})
        if is_cut:
            return
        self.emit("response.output_text.done", {**at, "text": text, "logprobs": []})
        self.emit("response.content_part.done", {**at, "part": part})
        self._done(index, {**item, "status": "completed", "content": [part]})

    def reasoning(self, item_id: str, summary: str, encrypted: str | None) -> None:
        index = len(self.output)
        item: dict[str, object] = {"id": item_id, "type": "reasoning", "summary": []}
        self.emit("response.output_item.added", {"output_index": index, "item": item})
        at = {"item_id": item_id, "output_index": index, "summary_index": 0}
        for piece in pieces(summary):
            self.emit("response.reasoning_summary_text.delta", {**at, "delta": piece})
        item = {**item, "summary": [{"type": "summary_text", "text": summary}]}
        if encrypted is not None:
            item["encrypted_content"] = encrypted
        self._done(index, item)

    def call(self, item_id: str, call: ScriptedCall) -> None:
        index = len(self.output)
        at: dict[str, object] = {"item_id": item_id, "output_index": index}
        item: dict[str, object] = {"id": item_id, "type": "function_call", "arguments": ""}
        item |= {"status": "in_progress", "call_id": call.call_id, "name": call.name}
        self.emit("response.output_item.added", {"output_index": index, "item": item})
        for piece in pieces(call.arguments):
            self.emit("response.function_call_arguments.delta", {**at, "delta": piece})
        done = {**at, "name": call.name, "arguments": call.arguments}
        self.emit("response.function_call_arguments.done", done)
        self._done(index, {**item, "status": "completed", "arguments": call.arguments})

    def _done(self, index: int, item: dict[str, object]) -> None:
        self.output.append(item)
        self.emit("response.output_item.done", {"output_index": index, "item": item})

    def finish(self, kind: str, status: str, changes: dict[str, object]) -> None:
        self.response = {**self.response, "status": status, "output": self.output, **changes}
        self.emit(kind, {"response": self.response})


def _error(
    status: int, message: str, code: str | None = None, retry_after_s: float | None = None
) -> web.Response:
    kind = "server_error" if status >= 500 else "invalid_request_error"
    code = code or {401: "invalid_api_key", 429: "rate_limit_exceeded"}.get(status)
    error = {"message": message, "type": kind, "param": None, "code": code}
    headers = {"Retry-After": f"{retry_after_s:g}"} if retry_after_s is not None else None
    body = _ENCODER.encode({"error": error})
    return web.Response(body=body, status=status, headers=headers, content_type="application/json")


class OpenAIResponsesServer(ScriptedServer[Step]):
    """`POST /v1/responses` on 127.0.0.1, answered from a script."""

    title = "fake Responses API"
    route = "/v1/responses"

    def __init__(self, *, api_key: str | None = None) -> None:
        super().__init__(api_key=api_key)
        self.requests: list[ResponsesRequest] = []
        self._numbers = itertools.count(1)

    def error(self, status: int, message: str) -> web.StreamResponse:
        return _error(status, message)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        headers = {name.lower(): value for name, value in request.headers.items()}
        try:
            typed = _BODY.decode(raw)
        except msgspec.DecodeError as exc:
            self.failures.append(f"refused request body: {exc}")  # our client sent it: a bug
            return _error(400, str(exc))
        tapped = ResponsesRequest(headers=headers, body=_RAW_BODY.decode(raw), typed=typed)
        self.requests.append(tapped)
        if self.api_key and headers.get("authorization") != f"Bearer {self.api_key}":
            return _error(401, "Incorrect API key provided.")
        step = self.next_step(len(self.requests))
        if step is None:
            return _error(500, "the fake's script has no step left")
        if isinstance(step, HttpError):
            return _error(step.status, step.message, step.code, step.retry_after_s)
        return await write_sse(request, self._events(step, tapped, len(raw)).frames)

    def _events(self, step: Answer | Broken, tapped: ResponsesRequest, size: int) -> _Events:
        events = _Events(self._response(tapped))
        if isinstance(step, Broken) and step.kind == "error":
            events.emit("error", {"code": step.code, "message": step.message, "param": None})
            return events
        events.start()
        if isinstance(step, Answer) and step.reasoning:
            item_id = self._id("rs")
            wanted = "reasoning.encrypted_content" in tapped.typed.include
            events.reasoning(item_id, step.reasoning, f"enc:{item_id}" if wanted else None)
        if step.text:
            events.message(self._id("msg"), step.text, is_cut=isinstance(step, Broken))
        if isinstance(step, Broken):
            if step.kind == "failed":
                failure: dict[str, object] = {"code": step.code, "message": step.message}
                events.finish("response.failed", "failed", {"error": failure})
            return events
        for call in step.calls:
            call_id = call.call_id or self._id("call")
            events.call(self._id("fc"), msgspec.structs.replace(call, call_id=call_id))
        output_chars = len(step.text) + sum(len(call.arguments) for call in step.calls)
        usage = step.usage or TokenCounts(
            input_tokens=max(1, size // 4), output_tokens=max(1, output_chars // 4)
        )
        events.finish("response.completed", "completed", {"usage": usage_json(usage)})
        return events

    def _id(self, prefix: str) -> str:
        return f"{prefix}_{next(self._numbers)}"

    def _response(self, tapped: ResponsesRequest) -> dict[str, object]:
        """The response object as created: in progress, no output yet, the request echoed."""
        response: dict[str, object] = {name: tapped.body.get(name) for name in _ECHOED}
        response |= {"id": self._id("resp"), "object": "response", "created_at": int(time.time())}
        response |= {"status": "in_progress", "error": None, "model": tapped.typed.model}
        response |= {"output": [], "usage": None, "tools": tapped.body.get("tools", [])}
        response["service_tier"] = tapped.typed.service_tier or "default"
        return response


def responses_api(api_key: str | None = None) -> AbstractAsyncContextManager[OpenAIResponsesServer]:
    """A running fake; on a clean exit, `assert_done()` checks the script was followed."""
    return serving(OpenAIResponsesServer(api_key=api_key))
