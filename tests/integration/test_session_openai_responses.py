"""A whole turn over `provider = "openai_responses"`: the real session and tools services on real
NATS, the model behind the fake Responses API."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import msgspec

from services.session.service import run as run_session
from services.tools.builtin.shell import ShellArgs
from services.tools.catalog import parameters
from services.tools.service import run as run_tools
from shared import subjects
from shared.messages.history import HISTORY, AssistantMessage, ToolResults
from tests.integration.test_session import OUT, SESSION, answer, say
from tests.kit.openai_responses_api import (
    FunctionCall,
    FunctionCallOutput,
    FunctionTool,
    OpenAIResponsesServer,
    Step,
    reply,
    responses_api,
    tool_call,
    tool_calls,
)
from tests.kit.services import make_runtime, running


def config(base_url: str) -> dict[str, object]:
    model: dict[str, object] = {
        "provider": "openai_responses",
        "model": "gpt-responses",
        "base_url": base_url,
        "api_key": "k",
        "retry": {"attempts": 1, "backoff_s": 0.01},
        "reasoning": {"effort": "low", "summary": "auto"},
    }
    return {"default_model": "main", "models": {"main": model}, "shutdown_grace_s": 5}


@asynccontextmanager
async def responses_stack(
    bus, workdir, nats_access, *steps: Step
) -> AsyncIterator[OpenAIResponsesServer]:
    """The session and tools services against the fake Responses API scripted with `steps`."""
    async with responses_api(api_key="k") as api:
        api.script(*steps)
        runtime = make_runtime(config(api.base_url), workdir, nats_access)
        await bus.watch(OUT)
        async with running(runtime, run_session, run_tools):
            yield api


async def test_a_shell_call_goes_round_the_responses_api_and_the_answer_is_delivered(
    bus, workdir, nats_access
):
    async with responses_stack(
        bus,
        workdir,
        nats_access,
        tool_calls(
            tool_call("shell", {"command": "echo hi"}, call_id="call_echo"), reasoning="Run it."
        ),
        reply("The shell said hi."),
    ) as api:
        await say(bus, "greet me from the shell", 1)
        final = await answer(bus)

    assert final.text == "The shell said hi."
    first, second = api.requests
    assert first.last_user_text == "greet me from the shell"
    assert first.body["instructions"]  # the system prompt travels as instructions
    assert first.body["prompt_cache_key"] == second.body["prompt_cache_key"] == f"{SESSION}:0"
    assert first.body["include"] == ["reasoning.encrypted_content"]
    # the second request replays the reasoning and the call, then answers it with the output
    *_, reasoning, call, result = second.typed.input
    assert reasoning == second.reasoning_items[0]  # the fake checked it issued that content
    assert call == FunctionCall(
        call_id="call_echo", name="shell", arguments='{"command":"echo hi"}'
    )
    assert isinstance(result, FunctionCallOutput)
    assert result.call_id == "call_echo"
    shell = msgspec.json.decode(result.output)
    assert (shell["exit_code"], shell["output"]) == (0, "hi\n")
    [tool] = [t for t in second.typed.tools if isinstance(t, FunctionTool) and t.name == "shell"]
    assert tool.parameters == parameters(ShellArgs)  # the catalog's, as a function tool
    assert (second.body["tool_choice"], second.body["store"]) == ("auto", False)
    events = await bus.stored(subjects.HISTORY_STREAM, subjects.history(SESSION), HISTORY)
    [asked, _] = [e for e in events if isinstance(e, AssistantMessage)]
    assert [c.provider_call_id for c in asked.tool_calls] == ["call_echo"]
    assert [(r.provider, r.summary) for r in asked.reasoning] == [("openai_responses", "Run it.")]
    [results] = [e for e in events if isinstance(e, ToolResults)]
    assert results.results[0].tool == "shell"
