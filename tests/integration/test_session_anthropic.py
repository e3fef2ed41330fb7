"""A turn through the real session and tools services, on real NATS, with an `anthropic` model
speaking to the fake Messages API."""

import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import msgspec

from services.session.service import run as run_session
from services.tools.service import run as run_tools
from shared import subjects
from shared.messages.history import HISTORY, AssistantMessage
from tests.integration.test_session import OUT, SESSION, answer, say
from tests.kit.anthropic_api import (
    AnthropicServer,
    Step,
    anthropic_api,
    reply,
    tool_call,
    tool_calls,
)
from tests.kit.anthropic_wire import CacheControl, ThinkingBlock
from tests.kit.services import make_runtime, running

KEY = "sk-ant-integration"


def config(base_url: str) -> dict[str, object]:
    model: dict[str, object] = {
        "provider": "anthropic",
        "model": "claude-test",
        "base_url": base_url,
        "api_key": KEY,
        "retry": {"attempts": 1, "backoff_s": 0.01},
        "reasoning": {"effort": "minimal"},  # thinking, 1,024 tokens
    }
    return {"default_model": "main", "models": {"main": model}, "shutdown_grace_s": 5}


@asynccontextmanager
async def anthropic_stack(
    bus, workdir, nats_access, *steps: Step
) -> AsyncIterator[AnthropicServer]:
    """The session and tools services against the fake Messages API scripted with `steps`."""
    async with anthropic_api(api_key=KEY) as fake:
        fake.script(*steps)
        runtime = make_runtime(config(fake.base_url), workdir, nats_access)
        await bus.watch(OUT)
        async with running(runtime, run_session, run_tools):
            yield fake


async def test_a_tool_call_round_trips_through_the_messages_api(bus, workdir, nats_access):
    steps = (
        tool_calls(
            tool_call("shell", {"command": "echo hi"}, call_id="toolu_shell_1"), thinking="Hm."
        ),
        reply("The command said hi."),
    )
    async with anthropic_stack(bus, workdir, nats_access, *steps) as fake:
        await say(bus, "say hi", 1)
        final = await answer(bus)

    assert final.text == "The command said hi."
    first, second = fake.requests
    assert second.roles[0] == "user"
    assert all(a != b for a, b in itertools.pairwise(second.roles))  # roles alternate
    assert second.roles[-2:] == ["assistant", "user"]
    assert first.body["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    [signature] = fake.signatures  # the signed block first, as the API insists, unchanged
    assert second.typed.messages[-2].blocks[0] == ThinkingBlock(thinking="Hm.", signature=signature)
    [use] = second.tool_uses
    assert (use.call_id, use.name, use.input) == ("toolu_shell_1", "shell", {"command": "echo hi"})
    [result] = second.tool_results
    assert (result.tool_use_id, result.is_error) == ("toolu_shell_1", False)
    assert isinstance(result.content, str)
    output = msgspec.json.decode(result.content)
    assert (output["exit_code"], output["output"]) == (0, "hi\n")
    assert second.typed.messages[-1].blocks == [result]  # the results end the request

    [shell] = [tool for tool in second.typed.tools if tool.name == "shell"]
    assert shell.input_schema is not None
    properties = shell.input_schema["properties"]
    assert isinstance(properties, dict)
    assert "command" in properties
    raw_tools = second.body["tools"]
    assert isinstance(raw_tools, list)
    assert all("input_schema" in tool and "parameters" not in tool for tool in raw_tools)

    marker = CacheControl(type="ephemeral")  # cache_ttl defaults to 300 s for anthropic
    assert not isinstance(second.typed.system, str)
    assert [block.cache_control for block in second.typed.system] == [marker]
    assert second.typed.tools[-1].cache_control == marker
    assert result.cache_control == marker
    assert first.body["system"] == second.body["system"]  # the prompt cache stays warm
    assert (second.headers["x-api-key"], second.headers["anthropic-version"]) == (KEY, "2023-06-01")

    events = await bus.stored(subjects.HISTORY_STREAM, subjects.history(SESSION), HISTORY)
    [asked, answered] = [e for e in events if isinstance(e, AssistantMessage)]
    assert [c.provider_call_id for c in asked.tool_calls] == ["toolu_shell_1"]
    assert [r.provider for r in asked.reasoning] == ["anthropic"]
    assert answered.text == "The command said hi."
