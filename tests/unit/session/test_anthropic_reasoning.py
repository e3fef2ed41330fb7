"""The anthropic provider's thinking (signed blocks kept and replayed, the budget) native web
search and the registry entry, against the fake Messages API over real HTTP."""

from collections.abc import AsyncIterator

import msgspec
import pytest

from services.session.providers import provider_for
from services.session.providers.anthropic import Anthropic, thinking_budget
from services.session.providers.protocol import (
    CallStarted,
    ModelRequest,
    ReasoningDelta,
    StreamEvent,
)
from shared.messages.history import (
    AssistantMessage,
    ToolResults,
)
from shared.model_config import ModelConfig
from tests.kit.anthropic_api import (
    AnthropicServer,
    anthropic_api,
    reply,
    tool_call,
    tool_calls,
)
from tests.unit.session.test_anthropic import (
    ASK,
    KEY,
    SHELL,
    TURN,
    call,
    complete,
    model_at,
    result,
)


@pytest.fixture
async def fake() -> AsyncIterator[AnthropicServer]:
    async with anthropic_api(api_key=KEY) as server:
        yield server


async def test_thinking_blocks_come_back_signed_and_are_replayed_unchanged(fake, http):
    fake.script(tool_calls(tool_call("shell", {"command": "ls"}), thinking="List first."))
    fake.script(reply("Done."))
    model = model_at(fake.base_url, reasoning={"effort": "minimal"}, max_output_tokens=4096)
    ask = ModelRequest(system_prompt="s", history=ASK.history, tools=[SHELL])

    streamed: list[StreamEvent] = []
    first = await complete(http, model, ask, streamed)

    assert "".join(e.text for e in streamed if isinstance(e, ReasoningDelta)) == "List first."
    assert CallStarted(name="shell") in streamed
    [thought] = first.reasoning
    assert (thought.provider, thought.summary) == ("anthropic", "List first.")
    block = msgspec.json.decode(thought.item)
    assert block["type"] == "thinking"
    assert block["signature"] in fake.signatures
    [requested] = first.tool_calls
    calls = [call("c1_1_0", requested.provider_call_id, "shell", requested.arguments)]
    other = msgspec.structs.replace(thought, provider="openai_responses", item='{"type":"x"}')
    said = AssistantMessage(
        turn_id=TURN, text="", model="m", tool_calls=calls, reasoning=[other, thought]
    )
    later = [*ASK.history, said, ToolResults(turn_id=TURN, results=[result("c1_1_0", "[]")])]
    await complete(http, model, ModelRequest(system_prompt="s", history=later, tools=[SHELL]))

    assert fake.requests[0].body["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    replayed = fake.requests[1].body["messages"][1]["content"]  # the fake checks the signature
    assert replayed[0] == block
    assert replayed[1]["type"] == "tool_use"


@pytest.mark.parametrize(
    ("reasoning", "max_output_tokens", "budget"),
    [
        ({"effort": "high"}, 32_000, 24_000),
        ({"effort": "xhigh"}, 8_192, 8_191),  # always below max_tokens
        ({"effort": "medium", "max_tokens": 2_000}, 8_192, 2_000),
        ({"effort": "low"}, 1_000, None),  # no budget the API takes fits: no thinking
        ({"summary": "auto"}, 8_192, None),
    ],
)
def test_the_thinking_budget(reasoning, max_output_tokens, budget):
    settings = {"provider": "anthropic", "model": "c", "api_key": "k", "reasoning": reasoning}
    model = msgspec.convert(settings | {"max_output_tokens": max_output_tokens}, ModelConfig)

    assert thinking_budget(model) == budget


async def test_native_web_search_is_the_server_tool_with_the_cache_marker_last(fake, http):
    fake.script(reply("ok"))
    model = model_at(fake.base_url, capabilities=["tools", "web_search"], cache_ttl=300)

    await complete(http, model, ModelRequest(system_prompt="s", history=ASK.history, tools=[SHELL]))

    shell, search = fake.requests[0].body["tools"]
    assert search == {
        "type": "web_search_20250305",
        "name": "web_search",
        "max_uses": 5,
        "cache_control": {"type": "ephemeral"},
    }
    assert "cache_control" not in shell


def test_the_registry_names_this_provider():
    assert isinstance(provider_for("anthropic"), Anthropic)
