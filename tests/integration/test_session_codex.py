"""A whole turn over `provider = "codex"`: the real session and tools services on real NATS, the
model behind the fake Codex backend (a real websocket), the tokens in a real auth file."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import msgspec

from services.session.providers import codex_auth
from services.session.service import run as run_session
from services.tools.service import run as run_tools
from shared import subjects
from shared.messages.history import HISTORY, AssistantMessage
from tests.integration.test_session import OUT, SESSION, answer, say
from tests.kit.codex_api import ACCOUNT_ID, CodexServer, Step, codex_api, reply, tool_calls
from tests.kit.codex_api import tool_call as call
from tests.kit.openai_responses_api import FunctionCall, FunctionCallOutput
from tests.kit.services import make_runtime, running


def config(base_url: str, auth_file: Path) -> dict[str, object]:
    model: dict[str, object] = {
        "provider": "codex",
        "model": "gpt-5-codex",
        "base_url": base_url,
        "auth_file": str(auth_file),
        "retry": {"attempts": 1, "backoff_s": 0.01},
    }
    return {"default_model": "main", "models": {"main": model}, "shutdown_grace_s": 5}


@asynccontextmanager
async def codex_stack(
    bus, workdir, nats_access, *steps: Step, expires_in_s: float = 3600
) -> AsyncIterator[CodexServer]:
    """The session and tools services against the fake Codex backend scripted with `steps`."""
    async with codex_api() as codex:
        auth_file = codex.write_auth_file(workdir.parent / "auth.json", expires_in_s=expires_in_s)
        codex.script(*steps)
        runtime = make_runtime(config(codex.base_url, auth_file), workdir, nats_access)
        await bus.watch(OUT)
        async with running(runtime, run_session, run_tools):
            yield codex


async def test_a_shell_call_goes_round_the_codex_socket_and_the_answer_is_delivered(
    bus, workdir, nats_access
):
    steps = (
        tool_calls(call("shell", {"command": "echo hi"}, call_id="call_echo"), reasoning=["Run."]),
        reply("The shell said hi."),
    )
    async with codex_stack(bus, workdir, nats_access, *steps) as codex:
        await say(bus, "greet me from the shell", 1)
        final = await answer(bus)

    assert final.text == "The shell said hi."
    first, second = codex.requests
    for request in (first, second):  # the subscription's credentials on every upgrade
        assert request.headers["authorization"] == f"Bearer {codex.access_token}"
        assert request.headers["chatgpt-account-id"] == ACCOUNT_ID
        assert request.headers["openai-beta"] == "responses_websockets=2026-02-06"
        assert request.headers["session_id"] == SESSION
    assert codex.refreshes == []  # the token was far from its expiry
    assert first.last_user_text == "greet me from the shell"
    assert first.typed.instructions  # the system prompt travels as instructions
    assert "max_output_tokens" not in first.frame
    assert first.typed.prompt_cache_key == second.typed.prompt_cache_key == f"{SESSION}:0"
    # the second frame replays the reasoning and the call, then answers it with the output
    *_, reasoning, asked, result = second.typed.input
    assert reasoning == second.reasoning[0]  # the fake checked it made that encrypted content
    assert asked == FunctionCall(
        call_id="call_echo", name="shell", arguments='{"command":"echo hi"}'
    )
    assert isinstance(result, FunctionCallOutput)
    assert result.call_id == "call_echo"
    shell = msgspec.json.decode(result.output)
    assert (shell["exit_code"], shell["output"]) == (0, "hi\n")
    events = await bus.stored(subjects.HISTORY_STREAM, subjects.history(SESSION), HISTORY)
    [asked_event, _] = [e for e in events if isinstance(e, AssistantMessage)]
    assert [r.provider for r in asked_event.reasoning] == ["codex"]
    assert [c.provider_call_id for c in asked_event.tool_calls] == ["call_echo"]


async def test_a_token_about_to_expire_is_refreshed_before_the_turn_calls_and_kept(
    bus, workdir, nats_access, monkeypatch
):
    async with codex_stack(bus, workdir, nats_access, reply("Fresh."), expires_in_s=20) as codex:
        monkeypatch.setattr(codex_auth, "TOKEN_URL", codex.token_url)  # the endpoint's address
        stale = tokens(workdir.parent / "auth.json")
        await say(bus, "hello", 1)
        final = await answer(bus)

    assert final.text == "Fresh."
    [refresh] = codex.refreshes
    assert refresh.refresh_token == stale["refresh_token"]
    [request] = codex.requests
    assert request.headers["authorization"] == f"Bearer {codex.access_token}"
    kept = tokens(workdir.parent / "auth.json")
    assert kept["access_token"] == codex.access_token != stale["access_token"]
    assert kept["refresh_token"] == codex.refresh_token


def tokens(path: Path) -> dict[str, object]:
    found = msgspec.json.decode(path.read_bytes())["tokens"]
    assert isinstance(found, dict)
    return found
