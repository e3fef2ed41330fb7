"""The openai_chat provider's OpenRouter extras (reasoning, service tier, cache marker, cost, web
search) and its stream events."""

import msgspec

from services.session.providers.openai_chat import complete, request_body
from services.session.providers.protocol import (
    CallStarted,
    ReasoningDelta,
    StreamEvent,
    TextDelta,
)
from shared.messages.tools import ToolSpec
from shared.model_config import ModelConfig
from tests.kit.llm_api import (
    TokenCounts,
    reply,
)
from tests.unit.session.test_openai_chat import (
    ASK,
    SHELL,
    model_at,
    sse_transport,
)


async def test_openrouters_reported_cost_is_kept(server, http):
    counts = TokenCounts(prompt_tokens=10, completion_tokens=2, cost=0.00042)
    server.script(reply("ok", usage=counts))

    answer = await complete(http, model_at(server.base_url), ASK, [])

    assert answer.usage.cost == 0.00042


async def test_reasoning_text_and_the_start_of_each_call_are_streamed_as_events():
    chunks = [
        {"choices": [{"index": 0, "delta": {"reasoning": "Think"}}]},
        {"choices": [{"index": 0, "delta": {"reasoning": "ing."}}]},
        {"choices": [{"index": 0, "delta": {"content": "Let me look."}}]},
        {"choices": [{"index": 0, "delta": {"tool_calls": [CALL_START]}}]},
        {
            "choices": [
                {"index": 0, "delta": {"tool_calls": [CALL_REST]}, "finish_reason": "tool_calls"}
            ]
        },
    ]
    lines = [f"data: {msgspec.json.encode(chunk).decode()}" for chunk in chunks]
    events: list[StreamEvent] = []
    async with sse_transport(*lines, "data: [DONE]") as client:
        answer = await complete(client, model_at("http://provider.test/v1"), ASK, [], events.append)

    assert events == [
        ReasoningDelta(text="Think"),
        ReasoningDelta(text="ing."),
        TextDelta(text="Let me look."),
        CallStarted(name="shell"),
    ]
    assert answer.tool_calls[0].arguments == '{"command":"ls"}'


def test_openrouter_extras_reasoning_and_service_tier_go_into_the_body():
    def body(**config: object) -> dict[str, object]:
        table = {"provider": "openai_chat", "model": "anthropic/claude-x"} | config
        return request_body(msgspec.convert(table, ModelConfig), ASK, [])

    routed = body(reasoning={"effort": "high"}, service_tier="fast")
    assert routed["usage"] == {"include": True}
    assert routed["cache_control"] == {"type": "ephemeral"}  # cache_ttl 300 by default here
    assert routed["reasoning"] == {"effort": "high"}
    assert routed["service_tier"] == "priority"
    assert body(cache_ttl=3600)["cache_control"] == {"type": "ephemeral", "ttl": "1h"}
    assert "cache_control" not in body(cache_ttl=0)
    assert "cache_control" not in body(model="openai/gpt-5")
    plain = body(base_url="http://127.0.0.1:8080/v1")
    assert {"usage", "cache_control", "reasoning", "service_tier"}.isdisjoint(plain)


def test_native_web_search_is_openrouters_web_plugin_when_tools_are_offered():
    def body(tools: list[ToolSpec], **config: object) -> dict[str, object]:
        table = {"provider": "openai_chat", "model": "openai/gpt-x"} | config
        return request_body(msgspec.convert(table, ModelConfig), ASK, tools)

    searching = {"capabilities": ["tools", "web_search"]}
    assert body([SHELL], **searching)["plugins"] == [{"id": "web"}]
    assert "plugins" not in body([], **searching)  # no tools this round: no search either
    assert "plugins" not in body([SHELL])
    assert "plugins" not in body([SHELL], base_url="http://127.0.0.1:1/v1", **searching)


CALL_START = {"index": 0, "id": "call_1", "function": {"name": "shell", "arguments": '{"comm'}}
CALL_REST = {"index": 0, "function": {"arguments": 'and":"ls"}'}}
