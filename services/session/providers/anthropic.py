"""`provider = "anthropic"`: the Messages API, streamed (SPEC §7.2, §7.4).

One call, one try: the history as alternating user and assistant messages of content blocks, the
prompt-cache markers, the SSE stream assembled into a ModelReply (text deltas passed on as they
arrive), and every way the call can fail turned into a ProviderError with a one-line reason
(SPEC §3.8); retries and fallback are `model_calls`'s. Thinking is requested when the model has
`reasoning`; its signed blocks are stored with the answer and replayed unchanged, as the API
requires.
"""

import re
from collections.abc import Sequence
from typing import Literal, assert_never

import httpx
import msgspec

from services.session.providers import anthropic_stream, content_parts, file_uploads, http_stream
from services.session.providers.anthropic_stream import ERROR_BODY
from services.session.providers.openai_chat import (
    BOOKKEEPING,
    cache_marker,
    call_ids_on_wire,
)
from services.session.providers.protocol import (
    ModelReply,
    ModelRequest,
    OnEvent,
)
from shared.messages.history import (
    AssistantMessage,
    Compacted,
    HistoryEvent,
    Notice,
    SessionStarted,
    ToolResults,
    TurnFinished,
    TurnStarted,
    UserMessage,
)
from shared.model_config import ModelConfig

API_VERSION = "2023-06-01"
TOOL_USE_ID = re.compile(r"[A-Za-z0-9_-]+")  # the ids the API accepts in a tool_use block
# SPEC §7.2: the thinking budget by effort, when `reasoning.max_tokens` does not give one.
THINKING_BUDGETS = {"minimal": 1024, "low": 4096, "medium": 10_000, "high": 24_000, "xhigh": 32_000}
MIN_THINKING_BUDGET = 1024  # the API's least
WEB_SEARCH: dict[str, object] = {"type": "web_search_20250305", "name": "web_search", "max_uses": 5}

Block = dict[str, object]


class Message(msgspec.Struct, frozen=True, kw_only=True):
    """One request message; its content list grows while same-role events are merged into it."""

    role: Literal["user", "assistant"]
    content: list[Block]


# Tool input must be an object; its values stay the model's JSON (style 18).
ToolInput = dict[str, msgspec.Raw]
TOOL_INPUT: msgspec.json.Decoder[ToolInput] = msgspec.json.Decoder(ToolInput)
REPLAYED: msgspec.json.Decoder[Block] = msgspec.json.Decoder(Block)
ENCODER = msgspec.json.Encoder()


# --- history → messages -------------------------------------------------------------------------


def to_messages(
    history: Sequence[HistoryEvent],
    notice: str | None = None,
    media: content_parts.Media | None = None,
) -> list[Message]:
    """The `messages` of a request: the conversation as stored (each attachment as `media` has
    it for this call, SPEC §8.2), then the request's notice.

    Notices are user-role text (SPEC §3.11). The API wants user and assistant to alternate, so an
    event of the role just sent joins that message. `history` has a closed tool protocol
    (`history_repair.closed`): tool results follow their calls at once.
    """
    messages: list[Message] = []
    wire_ids: dict[str, str] = {}  # the nearest assistant's calls: our call id → the wire's
    for event in history:
        if type(event) in BOOKKEEPING:  # half of a long history: the cheapest test first
            continue
        match event:
            case UserMessage():
                _add(messages, "user", content_parts.anthropic_blocks(event, media or {}))
            case Notice() | Compacted():  # the summary of what was compacted, too
                _add(messages, "user", _text(event.text))
            case AssistantMessage():
                wire_ids = call_ids_on_wire(event.tool_calls, TOOL_USE_ID.fullmatch)
                _add(messages, "assistant", _assistant(event, wire_ids))
            case ToolResults():
                results: list[Block] = [
                    {
                        "type": "tool_result",
                        "tool_use_id": wire_ids.get(result.call_id, result.call_id),
                        "content": content_parts.anthropic_result(result, media or {}),
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
    thinking = [REPLAYED.decode(r.item) for r in event.reasoning if r.provider == "anthropic"]
    return thinking + _text(event.text) + uses


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
    messages = to_messages(request.history, request.notice, request.media)
    tools: list[Block] = [
        {"name": t.name, "description": t.description, "input_schema": t.parameters}
        for t in request.tools
    ]
    if tools and model.can("web_search"):  # the server-side tool (SPEC §7.2), after ours
        tools.append(dict(WEB_SEARCH))
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
    budget = thinking_budget(model)
    if budget is not None:
        body["thinking"] = {"type": "enabled", "budget_tokens": budget}
    return body


def thinking_budget(model: ModelConfig) -> int | None:
    """SPEC §7.2: `reasoning.max_tokens`, else by effort; always below `max_tokens`, and None
    (no thinking) when no budget the API accepts fits under it."""
    wanted = model.reasoning
    if wanted is None:
        return None
    budget = wanted.max_tokens or (THINKING_BUDGETS.get(wanted.effort) if wanted.effort else None)
    if budget is None:
        return None
    budget = min(budget, model.max_output_tokens - 1)
    return budget if budget >= MIN_THINKING_BUDGET else None


# --- the call -----------------------------------------------------------------------------------


class Anthropic:
    """The Provider for the Messages API."""

    async def complete(
        self, http: httpx.AsyncClient, model: ModelConfig, request: ModelRequest, on_event: OnEvent
    ) -> ModelReply:
        body = ENCODER.encode(request_body(model, request))
        host = httpx.URL(model.base_url).host

        async def read(response: httpx.Response) -> ModelReply:
            return await anthropic_stream.read(response, host, on_event)

        sending = ("/messages", _headers(model), body)
        return await http_stream.post(http, model, sending, read, _error_text)


def _headers(model: ModelConfig) -> httpx.Headers:
    headers = httpx.Headers({"content-type": "application/json", "anthropic-version": API_VERSION})
    headers.update(model.headers)  # names compare case-insensitively: a configured one wins
    if model.api_key:
        headers["x-api-key"] = model.api_key
    if file_uploads.uses_files_api(model):  # content blocks may name uploaded files
        file_uploads.with_files_beta(headers)
    return headers


def _error_text(raw: bytes) -> tuple[str, str]:
    """Anthropic's error body is `{"type": "error", "error": {"type": …, "message": …}}`."""
    try:
        error = ERROR_BODY.decode(raw).error
    except msgspec.DecodeError:
        return "", ""
    message = (error and (error.message or error.type)) or ""
    return message, message
