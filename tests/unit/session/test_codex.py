"""The codex provider against the fake Codex backend: a real websocket and real OAuth HTTP."""

import asyncio
import uuid

import msgspec
import pytest

from services.session.providers.codex import Codex, socket_url
from services.session.providers.codex_auth import CodexAuth
from services.session.providers.protocol import (
    AuthError,
    ContextLengthError,
    ModelReply,
    ModelRequest,
    ProviderError,
    RequestedCall,
    StreamEvent,
    TextDelta,
)
from shared.ids import SessionId, ToolCallId, TurnId
from shared.messages.contract import Sender
from shared.messages.history import (
    AssistantMessage,
    HistoryEvent,
    Reasoning,
    SessionStarted,
    ToolCall,
    ToolResult,
    ToolResults,
    TurnStarted,
    Usage,
    UserMessage,
)
from shared.messages.tools import ToolSpec
from shared.model_config import ModelConfig
from tests.kit.codex_api import (
    ACCOUNT_ID,
    Dropped,
    Refused,
    StreamError,
    codex_api,
    reply,
    tool_call,
    tool_calls,
)
from tests.kit.codex_wire import SummaryText
from tests.kit.openai_responses_api import FunctionCall, FunctionCallOutput, TokenCounts

TURN = TurnId("t1")
SCHEMA = {"type": "object", "properties": {"command": {"type": "string"}}}
SHELL = ToolSpec(
    name="shell",
    description="Run a shell command.",
    parameters=msgspec.Raw(msgspec.json.encode(SCHEMA)),
)


@pytest.fixture
async def codex():
    async with codex_api() as fake:
        yield fake


@pytest.fixture
def auth_file(codex, tmp_path):
    return codex.write_auth_file(tmp_path / "auth.json")


@pytest.fixture
def provider(codex):
    return Codex(CodexAuth(codex.token_url), reconnect_delay_s=0.01)


def model_at(base_url: str, auth_file: object, **extra: object) -> ModelConfig:
    table: dict[str, object] = {"provider": "codex", "base_url": base_url, "model": "gpt-5-codex"}
    table |= {"auth_file": str(auth_file), "max_output_tokens": 1234, "timeout_s": 30.0} | extra
    return msgspec.convert(table, ModelConfig)


def asking(text: str, *earlier: HistoryEvent, tools: list[ToolSpec] | None = None) -> ModelRequest:
    history: list[HistoryEvent] = [
        SessionStarted(session_id=SessionId("s1"), session_type="foreground", model="m"),
        TurnStarted(turn_id=TURN, input_seq=1),
        *earlier,
        UserMessage(turn_id=TURN, text=text, sender=Sender(display_name="Ada")),
    ]
    return ModelRequest(system_prompt="You are a test.", history=history, tools=tools or [])


async def complete(provider, http, model, request) -> tuple[ModelReply, list[StreamEvent]]:
    events: list[StreamEvent] = []
    answer = await provider.complete(http, model, request, events.append)
    return answer, events


def test_the_socket_url_is_the_base_url_s_responses_over_ws():
    assert socket_url("https://chatgpt.com/backend-api/codex") == (
        "wss://chatgpt.com/backend-api/codex/responses"
    )
    assert socket_url("http://127.0.0.1:8080/codex/") == "ws://127.0.0.1:8080/codex/responses"


async def test_the_frame_is_codex_s_response_create(codex, auth_file, provider, http):
    codex.script(reply("Hello, Ada."))
    model = model_at(codex.base_url, auth_file, reasoning={"effort": "high"})

    answer, events = await complete(provider, http, model, asking("hi", tools=[SHELL]))

    assert answer.text == "Hello, Ada."
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "Hello, Ada."
    [request] = codex.requests
    frame = {key: value for key, value in request.frame.items() if key != "input"}
    tool = {"type": "function", "name": "shell", "description": "Run a shell command."}
    assert frame == {  # no max_output_tokens, no cache markers, no service tier by default
        "type": "response.create",
        "model": "gpt-5-codex",
        "instructions": "You are a test.",
        "tools": [tool | {"parameters": SCHEMA}],
        "tool_choice": "auto",
        "parallel_tool_calls": True,
        "reasoning": {"effort": "high", "summary": "auto"},
        "include": ["reasoning.encrypted_content"],
        "store": False,
        "stream": True,
        "prompt_cache_key": "s1:0",
    }
    assert request.last_user_text == "hi"


async def test_the_upgrade_carries_the_subscription_s_headers(codex, auth_file, provider, http):
    codex.script(reply("one"), reply("two"))
    model = model_at(codex.base_url, auth_file, headers={"X-Title": "Stellaclaw"})

    await complete(provider, http, model, asking("first"))
    await complete(provider, http, model, asking("second"))

    first, second = (request.headers for request in codex.requests)
    assert first["authorization"] == f"Bearer {codex.access_token}"
    assert first["chatgpt-account-id"] == ACCOUNT_ID
    assert first["openai-beta"] == "responses_websockets=2026-02-06"
    assert first["session_id"] == second["session_id"] == "s1"
    assert first["originator"] == "codex_cli_rs"
    assert first["user-agent"].startswith("codex_cli_rs/")
    assert first["x-title"] == "Stellaclaw"
    assert uuid.UUID(first["x-client-request-id"]) != uuid.UUID(second["x-client-request-id"])


async def test_a_service_tier_is_sent_only_when_it_is_not_the_default(
    codex, auth_file, provider, http
):
    codex.script(reply("fast"), reply("usual"))

    await complete(
        provider, http, model_at(codex.base_url, auth_file, service_tier="priority"), asking("a")
    )
    await complete(provider, http, model_at(codex.base_url, auth_file), asking("b"))

    assert codex.requests[0].frame["service_tier"] == "priority"
    assert "service_tier" not in codex.requests[1].frame


async def test_function_calls_are_assembled_and_usage_read(codex, auth_file, provider, http):
    used = TokenCounts(input_tokens=900, output_tokens=200, cached_tokens=600, reasoning_tokens=50)
    calls = tool_calls(
        tool_call("read_file", {"path": "a.txt"}, call_id="call_a"),
        tool_call("shell", '{"command": "ls"}'),
        text="Let me look.",
    )
    codex.script(msgspec.structs.replace(calls, usage=used))

    answer, _ = await complete(provider, http, model_at(codex.base_url, auth_file), asking("go"))

    assert answer.text == "Let me look."
    first, second = answer.tool_calls
    assert first == RequestedCall(
        provider_call_id="call_a", name="read_file", arguments='{"path":"a.txt"}'
    )
    assert (second.name, second.arguments) == ("shell", '{"command": "ls"}')
    assert second.provider_call_id.startswith("call_")
    assert answer.usage == Usage(input=300, cache_read=600, output=200, reasoning=50)


async def test_a_tool_call_s_output_goes_back_with_the_call(codex, auth_file, provider, http):
    codex.script(reply("It says hello."))
    call = ToolCall(
        call_id=ToolCallId("c1"), provider_call_id="call_r", name="shell", arguments="{}"
    )
    done = ToolResult(call_id=ToolCallId("c1"), tool="shell", content='"hello"')
    earlier = (
        AssistantMessage(turn_id=TURN, text="", tool_calls=[call], model="m"),
        ToolResults(turn_id=TURN, results=[done]),
    )

    await complete(provider, http, model_at(codex.base_url, auth_file), asking("and?", *earlier))

    [request] = codex.requests
    assert request.function_calls == [FunctionCall(call_id="call_r", name="shell", arguments="{}")]
    assert request.function_outputs == [FunctionCallOutput(call_id="call_r", output='"hello"')]


async def test_reasoning_items_are_kept_and_replayed_to_codex_only(
    codex, auth_file, provider, http
):
    codex.script(reply("Forty-two.", reasoning=["Adding six and seven times..."]), reply("Yes."))
    model = model_at(codex.base_url, auth_file)

    answer, _ = await complete(provider, http, model, asking("what is 6 x 7?"))
    [kept] = answer.reasoning
    assert (kept.provider, kept.summary) == ("codex", "Adding six and seven times...")
    foreign = Reasoning(provider="openai_responses", item='{"type": "reasoning", "summary": []}')
    said = AssistantMessage(
        turn_id=TURN, text=answer.text, model="m", reasoning=[foreign, *answer.reasoning]
    )
    await complete(provider, http, model, asking("sure?", said))

    [replayed] = codex.requests[1].reasoning  # the fake refuses reasoning it did not make
    assert replayed.summary == [SummaryText(type="summary_text", text=kept.summary)]
    assert replayed.encrypted_content.startswith("gAAAA")
    assert msgspec.json.decode(kept.item)["encrypted_content"] == replayed.encrypted_content


async def test_an_expiring_token_is_refreshed_before_the_upgrade(codex, tmp_path, provider, http):
    auth_file = codex.write_auth_file(tmp_path / "auth.json", expires_in_s=30)
    codex.script(reply("ok"))

    answer, _ = await complete(provider, http, model_at(codex.base_url, auth_file), asking("hi"))

    assert answer.text == "ok"
    assert len(codex.refreshes) == 1
    assert [u.status for u in codex.upgrades] == [101]
    assert codex.upgrades[0].headers["authorization"] == f"Bearer {codex.access_token}"


async def test_a_refused_token_is_refreshed_once_and_the_call_made_again(
    codex, auth_file, provider, http
):
    codex.expire_access_token()  # the backend stopped taking it before its exp
    codex.script(reply("ok"))
    stale = msgspec.json.decode(auth_file.read_bytes())["tokens"]["access_token"]

    answer, _ = await complete(provider, http, model_at(codex.base_url, auth_file), asking("hi"))

    assert answer.text == "ok"
    assert [u.status for u in codex.upgrades] == [401, 101]
    refused, taken = (u.headers["authorization"] for u in codex.upgrades)
    assert (refused, taken) == (f"Bearer {stale}", f"Bearer {codex.access_token}")
    assert len(codex.refreshes) == 1


@pytest.mark.parametrize("status", [401, 403])
async def test_a_refusal_after_the_refresh_is_an_auth_error(
    codex, auth_file, provider, http, status
):
    codex.script(Refused(status=status, message="nope"), Refused(status=status, message="no"))

    with pytest.raises(AuthError) as caught:
        await complete(provider, http, model_at(codex.base_url, auth_file), asking("hi"))

    assert caught.value.reason == f"HTTP {status} from 127.0.0.1: no"
    assert (caught.value.status, caught.value.is_transient) == (status, False)
    assert len(codex.refreshes) == 1  # SPEC §7.3: one refresh, then once more


async def test_a_socket_dropped_before_the_first_event_is_opened_again(
    codex, auth_file, provider, http
):
    codex.script(
        Dropped(when="before_first_event"), Dropped(when="before_first_event"), reply("ok")
    )

    answer, _ = await complete(provider, http, model_at(codex.base_url, auth_file), asking("hi"))

    assert answer.text == "ok"
    assert len(codex.requests) == 3
    assert len({r.headers["x-client-request-id"] for r in codex.requests}) == 3


async def test_six_early_drops_in_a_row_are_a_transient_error(codex, auth_file, provider, http):
    codex.script(*[Dropped(when="before_first_event")] * 6)

    with pytest.raises(ProviderError, match=r"\(6 sockets in a row\)") as caught:
        await complete(provider, http, model_at(codex.base_url, auth_file), asking("hi"))

    assert caught.value.is_transient


async def test_a_socket_dropped_mid_answer_is_a_transient_error(codex, auth_file, provider, http):
    codex.script(Dropped(when="mid_answer", text="half an ans"))
    events: list[StreamEvent] = []

    model = model_at(codex.base_url, auth_file)

    with pytest.raises(ProviderError) as caught:
        await provider.complete(http, model, asking("hi"), events.append)

    assert caught.value.reason == "the socket to 127.0.0.1 closed before the response finished"
    assert caught.value.is_transient
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "half an ans"
    assert len(codex.requests) == 1  # never reopened: text was already shown


TOO_LONG = "Your input exceeds the context window of this model."
LIMIT = "The usage limit has been reached"
CONTEXT = "context_length_exceeded"
ANEW = "websocket_connection_limit_reached"  # a socket lives 60 minutes at most
FAILURES = [  # what the fake does; the error's class and whether a retry may cure it
    (StreamError(status=429, message=LIMIT, code="usage_limit_reached"), ProviderError, True),
    (StreamError(status=400, message=TOO_LONG, code=CONTEXT), ContextLengthError, False),
    (StreamError(status=None, message="Something broke."), ProviderError, True),
    (StreamError(status=400, message="Anew.", code=ANEW), ProviderError, True),
    (Refused(status=404, message="Model not found."), ProviderError, False),
    (Refused(status=400, message="Bad request."), ProviderError, False),
]
REASONS = [  # the one line the user reads, in the same order
    f"HTTP 429 in the stream from 127.0.0.1: {LIMIT}",
    f"HTTP 400 in the stream from 127.0.0.1: {TOO_LONG}",
    "error in the stream from 127.0.0.1: Something broke.",
    "error in the stream from 127.0.0.1: Anew.",
    "HTTP 404 from 127.0.0.1: Model not found.",
    "HTTP 400 from 127.0.0.1: Bad request.",
]


@pytest.mark.parametrize("case", [(*f, r) for f, r in zip(FAILURES, REASONS, strict=True)])
async def test_each_failure_is_a_provider_error_of_its_kind(codex, auth_file, provider, http, case):
    step, kind, is_transient, reason = case
    codex.script(step)

    with pytest.raises(ProviderError) as caught:
        await complete(provider, http, model_at(codex.base_url, auth_file), asking("hi"))

    assert type(caught.value) is kind
    assert (caught.value.reason, caught.value.is_transient) == (reason, is_transient)


async def test_a_refused_upgrade_with_retry_after_says_when_to_retry(
    codex, auth_file, provider, http
):
    codex.script(Refused(status=503, message="overloaded", retry_after_s=7))

    with pytest.raises(ProviderError) as caught:
        await complete(provider, http, model_at(codex.base_url, auth_file), asking("hi"))

    assert (caught.value.status, caught.value.retry_after, caught.value.is_transient) == (
        503,
        7,
        True,
    )


async def test_a_server_that_never_answers_the_upgrade_times_out(auth_file, provider, http):
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client gives up
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        model = model_at(f"http://127.0.0.1:{port}/codex", auth_file, timeout_s=0.3)
        with pytest.raises(ProviderError, match=r"^timed out after 0\.3 s$"):
            await complete(provider, http, model, asking("hi"))


async def test_a_missing_auth_file_is_an_auth_error_before_any_socket(
    codex, tmp_path, provider, http
):
    model = model_at(codex.base_url, tmp_path / "nowhere.json")

    with pytest.raises(AuthError, match=r"codex auth file .* not found: run `codex login`"):
        await complete(provider, http, model, asking("hi"))

    assert codex.upgrades == []
