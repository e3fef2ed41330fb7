"""The openai_responses provider's reasoning items (kept, replayed to this wire format only,
streamed as events) and native web search, against the fake Responses API over real HTTP."""

import msgspec
import pytest

from services.session.providers.protocol import (
    CallStarted,
    ModelRequest,
    ReasoningDelta,
)
from shared.ids import ToolCallId
from shared.messages.history import (
    AssistantMessage,
    ToolResult,
    ToolResults,
)
from tests.kit.openai_responses_api import (
    reply,
    responses_api,
    tool_call,
    tool_calls,
)
from tests.unit.session.test_openai_responses import (
    SHELL,
    TURN,
    call,
    complete,
    history,
    model_at,
)


@pytest.fixture
async def api():
    async with responses_api() as fake:
        yield fake


async def test_reasoning_items_are_kept_and_replayed_to_this_wire_format_only(api, http):
    api.script(
        tool_calls(tool_call("shell", {"command": "ls"}), reasoning="I should list."), reply("ok")
    )
    model = model_at(api.base_url, reasoning={"effort": "low", "summary": "auto"})
    ask = ModelRequest(system_prompt="s", history=history(), tools=[SHELL])

    first, _ = await complete(http, model, ask)

    [kept] = first.reasoning
    assert (kept.provider, kept.summary) == ("openai_responses", "I should list.")
    assert msgspec.json.decode(kept.item)["encrypted_content"].startswith("enc:rs_")
    calls = [call("c1_1_0", first.tool_calls[0].provider_call_id, "shell", '{"command":"ls"}')]
    others = [
        msgspec.structs.replace(kept, provider="codex", item='{"type":"reasoning","id":"x"}'),
        kept,
    ]
    answered = AssistantMessage(
        turn_id=TURN, text="", tool_calls=calls, model="m", reasoning=others
    )
    result = ToolResult(call_id=ToolCallId("c1_1_0"), tool="shell", content='{"ok":true}')
    later = [*history(), answered, ToolResults(turn_id=TURN, results=[result])]
    await complete(http, model, ModelRequest(system_prompt="s", history=later, tools=[SHELL]))

    [replayed] = api.requests[1].reasoning_items  # codex's item is not sent to the Responses API
    assert replayed.encrypted_content == msgspec.json.decode(kept.item)["encrypted_content"]
    assert api.requests[1].body["input"][-3]["type"] == "reasoning"  # before its function call


async def test_reasoning_summaries_and_call_starts_are_streamed_as_events(api, http):
    api.script(tool_calls(tool_call("shell", {"command": "ls"}), reasoning="Look first."))
    model = model_at(api.base_url, reasoning={"effort": "low", "summary": "auto"})

    _, events = await complete(
        http, model, ModelRequest(system_prompt="s", history=[], tools=[SHELL])
    )

    thought = "".join(e.text for e in events if isinstance(e, ReasoningDelta))
    assert thought == "Look first."
    assert [e for e in events if isinstance(e, CallStarted)] == [CallStarted(name="shell")]


async def test_native_web_search_is_a_built_in_tool_after_the_functions(api, http):
    api.script(reply("ok"))
    model = model_at(api.base_url, capabilities=["tools", "web_search"])

    await complete(http, model, ModelRequest(system_prompt="s", history=history(), tools=[SHELL]))

    assert [tool["type"] for tool in api.requests[0].body["tools"]] == ["function", "web_search"]
    assert api.requests[0].tools == ["shell"]


async def test_without_reasoning_configured_none_is_requested(api, http):
    api.script(reply("ok"))

    await complete(http, model_at(api.base_url))

    assert "reasoning" not in api.requests[0].body
    assert "include" not in api.requests[0].body
