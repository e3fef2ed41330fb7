"""`provider = "openai_responses"`: the OpenAI Responses API, streamed (SPEC §7.2).

One call, one try: the history as `input` items, the SSE stream's typed events assembled into a
ModelReply (text deltas passed on as they arrive), and every way the call can fail turned into a
ProviderError with a one-line reason (SPEC §3.8); retries and fallback are `model_calls`'s.
Reasoning (`[models.<name>] reasoning`) is requested with its encrypted content; the reasoning
items a response carries are stored with the assistant message and replayed as received, to the
same wire format only (Codex, which speaks these events too, keeps its own).
"""

from collections.abc import Sequence
from typing import assert_never

import httpx
import msgspec

from services.session.providers import content_parts, http_stream, responses_stream
from services.session.providers.openai_chat import (
    BOOKKEEPING,
    OPENROUTER_HOST,
    cache_marker,
    error_text,
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
    Reasoning,
    SessionStarted,
    ToolCall,
    ToolResults,
    TurnFinished,
    TurnStarted,
    UserMessage,
)
from shared.messages.tools import ToolSpec
from shared.model_config import ModelConfig

REPLAYED: msgspec.json.Decoder[dict[str, object]] = msgspec.json.Decoder(dict[str, object])
ENCODER = msgspec.json.Encoder()


# --- history → input items ------------------------------------------------------------------


def to_input(
    history: Sequence[HistoryEvent],
    notice: str | None = None,
    *,
    provider: str = "openai_responses",
    media: content_parts.Media | None = None,
) -> list[dict[str, object]]:
    """The `input` items of a request: the conversation as stored, then a request-only notice.

    Notices are user-role text (SPEC §3.11). `history` has a closed tool protocol
    (`history_repair.closed`), so every function_call has its function_call_output. Reasoning
    items are replayed only to the `provider` that made them, files as `media` has them (§8.2).
    """
    items: list[dict[str, object]] = []
    wire_ids: dict[str, str] = {}  # the nearest assistant's calls: our call id → the wire's
    for event in history:
        if type(event) in BOOKKEEPING:  # half of a long history: the cheapest test first
            continue
        match event:
            case UserMessage():
                content = content_parts.responses_content(event, media or {})
                items.append({"type": "message", "role": "user", "content": content})
            case Notice() | Compacted():  # the summary of what was compacted, too
                items.append(_user(event.text))
            case AssistantMessage():
                wire_ids = _wire_ids(event.tool_calls)
                items += replayed(event.reasoning, provider)
                items += _assistant(event, wire_ids)
            case ToolResults():  # each output under the id its function_call went with
                items += [
                    _output(wire_ids.get(r.call_id, r.call_id), r.content) for r in event.results
                ]
                items += content_parts.responses_loaded(event.results, media or {}, wire_ids)
            case SessionStarted() | TurnStarted() | TurnFinished():
                pass  # bookkeeping, not conversation
            case unhandled:
                assert_never(unhandled)
    if notice:
        items.append(_user(notice))
    return items


def replayed(reasoning: Sequence[Reasoning], provider: str) -> list[dict[str, object]]:
    """The stored reasoning items this provider made, as received."""
    return [REPLAYED.decode(r.item) for r in reasoning if r.provider == provider]


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
    """SPEC §7.4: `<session>:<compaction count>`; None for a history that names no session."""
    found = session_and_count(history)
    return f"{found[0]}:{found[1]}" if found is not None else None


def session_and_count(history: Sequence[HistoryEvent]) -> tuple[str, int] | None:
    """The session a history belongs to and how many compactions it has had (the history starts
    at its session's start or at its last compaction); None for a history with neither."""
    first = history[0] if history else None
    if isinstance(first, Compacted):
        return first.session_id, first.number
    started = next((e for e in history if isinstance(e, SessionStarted)), None)
    return (started.session_id, 0) if started is not None else None


def request_body(model: ModelConfig, request: ModelRequest) -> dict[str, object]:
    body: dict[str, object] = {
        "model": model.model,
        "instructions": request.system_prompt,
        "input": to_input(request.history, request.notice, media=request.media),
    }
    if request.tools:
        body["tools"] = tools(request.tools, model)
        body |= {"tool_choice": "auto", "parallel_tool_calls": True}
    body |= {"stream": True, "store": False, "max_output_tokens": model.max_output_tokens}
    body |= reasoning_fields(model)
    if model.service_tier != "default":
        body["service_tier"] = model.service_tier
    key = cache_key(request.history)
    if key is not None:
        body["prompt_cache_key"] = key
    is_openrouter = httpx.URL(model.base_url).host == OPENROUTER_HOST
    if is_openrouter and model.cache_ttl and model.model.startswith("anthropic/"):
        body["cache_control"] = cache_marker(model.cache_ttl)  # SPEC §7.4
    return body


def reasoning_fields(model: ModelConfig) -> dict[str, object]:
    """`reasoning` and the `include` that returns its encrypted content, when configured."""
    wanted = model.reasoning
    if wanted is None or (wanted.effort is None and wanted.summary is None):
        return {}
    reasoning = {"effort": wanted.effort, "summary": wanted.summary}
    return {
        "reasoning": {key: value for key, value in reasoning.items() if value is not None},
        "include": ["reasoning.encrypted_content"],
    }


def tools(specs: Sequence[ToolSpec], model: ModelConfig) -> list[dict[str, object]]:
    """The function tools, and the native web search when the model has it (SPEC §7.2)."""
    native: list[dict[str, object]] = [{"type": "web_search"}] if model.can("web_search") else []
    return [*(function_tool(spec) for spec in specs), *native]


def function_tool(spec: ToolSpec) -> dict[str, object]:
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
        headers = http_stream.bearer_headers(model)
        host = httpx.URL(model.base_url).host

        async def read(response: httpx.Response) -> ModelReply:
            return await responses_stream.read(response, host, on_event)

        return await http_stream.post(http, model, ("/responses", headers, body), read, error_text)
