"""The session service with real NATS, the real tools service and the fake OpenAI API."""

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import msgspec
import pytest
from nats.js.errors import ServiceUnavailableError

from services.session.service import run as run_session
from services.tools.service import run as run_tools
from shared import subjects
from shared.ids import ConversationId, SessionId, ToolCallId, TurnId
from shared.messages.contract import Sender, Workspace
from shared.messages.events import EVENT, ModelUsed
from shared.messages.history import (
    HISTORY,
    AssistantMessage,
    HistoryEvent,
    SessionStarted,
    ToolCall,
    ToolResults,
    TurnFinished,
    TurnStarted,
    Usage,
    UserMessage,
)
from shared.messages.outbound import OUTPUT, SendReply, SetReaction, ShowProgress, ShowTyping
from shared.messages.session import (
    STATUS,
    ConversationSettings,
    HandleMessage,
    SessionStatus,
    StatusQuery,
    WakeSession,
)
from tests.kit.llm_api import (
    OpenAIChatServer,
    Step,
    TokenCounts,
    http_error,
    llm_api,
    reply,
    tool_call,
    tool_calls,
)
from tests.kit.services import make_runtime, running
from tests.kit.waiting import eventually_async
from tests.unit.shared.samples import message_received

CONV = ConversationId("cli_ses")
SESSION = SessionId("cli_ses_fg1")
OUT = subjects.outbound("cli", CONV)


def config(base_url: str, **tables: object) -> dict[str, object]:
    model: dict[str, object] = {
        "provider": "openai_chat",
        "model": "gpt-test",
        "base_url": base_url,
        "api_key": "k",
        "retry": {"attempts": 1, "backoff_s": 0.01},  # one quick retry (SPEC §7.3)
    }
    return {"default_model": "main", "models": {"main": model}, "shutdown_grace_s": 5, **tables}


def handle(text: str, seq: int, model: str = "main") -> HandleMessage:
    return HandleMessage(
        session_id=SESSION,
        input_seq=seq,
        message=message_received(CONV, text),
        settings=ConversationSettings(
            model=model, workspace=Workspace(pool="local", path=f"workspaces/{CONV}")
        ),
    )


@asynccontextmanager
async def session_stack(
    bus, workdir, nats_access, *steps: Step, with_tools: bool = True, **tables: object
) -> AsyncIterator[OpenAIChatServer]:
    """The session (and tools) services against a fake model scripted with `steps`."""
    async with llm_api(api_key="k") as llm:
        llm.script(*steps)
        runtime = make_runtime(config(llm.base_url, **tables), workdir, nats_access)
        await bus.watch(OUT)
        runs = (run_session, run_tools) if with_tools else (run_session,)
        async with running(runtime, *runs):
            yield llm


async def say(bus, text: str, seq: int) -> None:
    await bus.publish(
        subjects.session_input(SESSION),
        handle(text, seq),
        msg_id=subjects.session_input_msg_id(seq),
    )
    await wake(bus)


async def wake(bus) -> None:
    """As the conversation service does after every input (a pending wake suffices)."""
    with contextlib.suppress(ServiceUnavailableError):
        await bus.publish(subjects.wake(SESSION), WakeSession(session_id=SESSION))


async def answer(bus) -> SendReply:
    while True:
        output = await bus.next(OUT, OUTPUT, timeout_s=10)
        if isinstance(output, SendReply):
            return output
        assert isinstance(output, ShowTyping | SetReaction | ShowProgress)


async def test_a_text_answer_is_delivered_and_the_turn_is_recorded(bus, workdir, nats_access):
    async with session_stack(bus, workdir, nats_access, reply("Hello from the model.")) as llm:
        await say(bus, "hi there", 1)
        typing = await bus.next(OUT, OUTPUT, timeout_s=10)
        final = await answer(bus)
    assert isinstance(typing, ShowTyping)
    assert final.text == "Hello from the model."
    assert final.out_id == subjects.answer_out_id(f"{SESSION}_t1")
    request = llm.requests[0]
    assert request.last_user_text == "hi there"
    assert request.messages[0].role == "system"
    assert "shell" in request.tools
    kinds = [
        type(e)
        for e in await bus.stored(subjects.HISTORY_STREAM, subjects.history(SESSION), HISTORY)
    ]
    assert kinds == [SessionStarted, TurnStarted, UserMessage, AssistantMessage, TurnFinished]


async def test_a_tool_call_runs_in_the_workspace_and_its_output_reaches_the_model(
    bus, workdir, nats_access
):
    async with llm_api(api_key="k") as llm:
        llm.script(
            tool_call("shell", {"command": "echo made > proof.txt && cat proof.txt"}),
            reply("The file says made."),
        )
        runtime = make_runtime(config(llm.base_url), workdir, nats_access)
        await bus.watch(OUT)
        async with running(runtime, run_session, run_tools):
            await say(bus, "make a file", 1)
            final = await answer(bus)
    assert final.text == "The file says made."
    assert (workdir / "workspaces" / CONV / "proof.txt").read_text() == "made\n"
    [tool_message] = llm.requests[1].tool_messages
    result = msgspec.json.decode(tool_message.text)
    assert result["exit_code"] == 0
    assert result["output"] == "made\n"
    events = await bus.stored(subjects.HISTORY_STREAM, subjects.history(SESSION), HISTORY)
    [results] = [e for e in events if isinstance(e, ToolResults)]
    assert results.results[0].tool == "shell"


async def test_bad_tool_arguments_go_back_to_the_model(bus, workdir, nats_access):
    async with session_stack(
        bus,
        workdir,
        nats_access,
        tool_call("shell", {"command": ""}),
        reply("The command was empty."),
    ) as llm:
        await say(bus, "run it", 1)
        final = await answer(bus)
    assert final.text == "The command was empty."
    result = msgspec.json.decode(llm.requests[1].tool_messages[0].text)
    assert result["error_kind"] == "invalid_arguments"
    assert "length >= 1" in result["error"]


async def test_a_provider_failure_is_told_to_the_user(bus, workdir, nats_access):
    overloaded = http_error(503, "upstream overloaded")
    async with session_stack(bus, workdir, nats_access, overloaded, overloaded):
        await say(bus, "hi", 1)
        final = await answer(bus)
    assert final.is_failure
    assert final.text.startswith("⚠️ The model call failed: HTTP 503 from 127.0.0.1 after 2 tries")
    events = await bus.stored(subjects.HISTORY_STREAM, subjects.history(SESSION), HISTORY)
    assert isinstance(events[-1], TurnFinished)
    assert events[-1].error == "provider"


async def test_history_carries_over_turns_and_a_repeated_input_is_not_a_second_turn(
    bus, workdir, nats_access
):
    async with llm_api(api_key="k") as llm:
        llm.script(reply("First answer."), reply("Second answer."))
        runtime = make_runtime(config(llm.base_url), workdir, nats_access)
        await bus.watch(OUT)
        async with running(runtime, run_session, run_tools):
            await say(bus, "one", 1)
            assert (await answer(bus)).text == "First answer."
        async with running(runtime, run_session, run_tools):  # a restart: history is reloaded
            await bus.publish(subjects.session_input(SESSION), handle("one", 1), msg_id="again")
            await wake(bus)
            await say(bus, "two", 2)
            assert (await answer(bus)).text == "Second answer."
    texts = [m.text for m in llm.requests[1].messages if m.role != "system"]
    assert texts == ["one", "First answer.", "two"]


async def test_without_a_tool_runner_the_turn_ends_with_a_clear_message(bus, workdir, nats_access):
    async with session_stack(bus, workdir, nats_access, with_tools=False) as llm:
        await say(bus, "hi", 1)
        final = await answer(bus)
    assert final.is_failure
    assert final.text.startswith("⚠️ No tool runner of pool 'local' answered")
    assert llm.requests == []


async def test_a_model_missing_from_this_config_falls_back_to_the_default(
    bus, workdir, nats_access
):
    async with session_stack(
        bus, workdir, nats_access, reply("Answered by the default model.")
    ) as llm:
        await bus.publish(subjects.session_input(SESSION), handle("hi", 1, model="gone"))
        await wake(bus)
        final = await answer(bus)
    assert final.text == "Answered by the default model."
    assert llm.requests[0].chat.model == "gpt-test"


async def test_calls_left_unanswered_by_a_cut_turn_are_closed_for_the_model(
    bus, workdir, nats_access
):
    turn = TurnId(f"{SESSION}_t1")
    cut_turn: list[HistoryEvent] = [
        SessionStarted(session_id=SESSION, session_type="foreground", model="main"),
        TurnStarted(turn_id=turn, input_seq=1),
        UserMessage(turn_id=turn, text="first", sender=Sender(display_name="Ada")),
        AssistantMessage(
            turn_id=turn,
            text="",
            model="main",
            tool_calls=[
                ToolCall(
                    call_id=ToolCallId("c1_1_0"),
                    provider_call_id="call_9",
                    name="shell",
                    arguments='{"command": "sleep 1"}',
                )
            ],
        ),
    ]  # the process died here: no ToolResults, no TurnFinished
    for event in cut_turn:
        await bus.publish(subjects.history(SESSION), event)
    async with session_stack(bus, workdir, nats_access, reply("Fresh start.")) as llm:
        await say(bus, "again", 2)
        final = await answer(bus)
    assert final.text == "Fresh start."
    roles = [m.role for m in llm.requests[0].messages]
    # the stored session never told the model its sandbox: the next turn does, before the message
    assert roles == ["system", "user", "assistant", "tool", "user", "user"]
    assert llm.requests[0].messages[-2].text.startswith("[Runtime Prompt Updates] ")
    [closing] = llm.requests[0].tool_messages
    assert closing.tool_call_id == "call_9"
    assert msgspec.json.decode(closing.text)["error_kind"] == "interrupted_by_restart"


async def test_the_prompt_states_the_sandbox_and_a_change_is_announced_once(
    bus, workdir, nats_access
):
    first = handle("hello", 1)
    changed = msgspec.structs.replace(
        handle("and now?", 2),
        settings=msgspec.structs.replace(first.settings, sandbox="disabled"),
    )
    steps = (reply("One."), reply("Two."), reply("Three."))
    async with session_stack(bus, workdir, nats_access, *steps) as llm:
        for message in (first, changed, msgspec.structs.replace(changed, input_seq=3)):
            await bus.publish(
                subjects.session_input(SESSION),
                message,
                msg_id=subjects.session_input_msg_id(message.input_seq),
            )
            await wake(bus)
            await answer(bus)
    system = [request.messages[0].text for request in llm.requests]
    assert system[0] == system[1] == system[2]  # built once: the prompt cache stays warm
    assert "- sandbox: " in system[0]
    updates = [m.text for m in llm.requests[2].messages if m.text.startswith("[Runtime Prompt")]
    assert updates == [
        "[Runtime Prompt Updates] The sandbox or remote mode changed; from now on: sandbox:"
        " disabled: shell commands run as the Stellaclaw service's user with its environment"
        " (secrets removed) and no limits; file tools accept any absolute path"
    ]
    assert llm.requests[1].messages[-2].text == updates[0]  # just before the user's message


async def test_a_failing_model_falls_back_the_chat_is_told_and_history_names_the_spare(
    bus, workdir, nats_access
):
    async with llm_api(api_key="k") as llm:
        wait = tool_call("shell", {"command": "until [ -e go ]; do sleep 0.05; done"})
        llm.script(*[http_error(503, "overloaded")] * 2, wait, reply("Spare speaking."))
        base = {"provider": "openai_chat", "base_url": llm.base_url, "api_key": "k"}
        retry = {"attempts": 1, "backoff_s": 0.01}
        models = {
            "main": base | {"model": "gpt-main", "retry": retry, "fallback": ["spare"]},
            "spare": base | {"model": "gpt-spare"},
        }
        runtime = make_runtime(config(llm.base_url, models=models), workdir, nats_access)
        await bus.watch(OUT)
        async with running(runtime, run_session, run_tools):
            await say(bus, "hello", 1)
            told = await answer(bus)
            busy = await eventually_async(
                lambda: running_tools(bus), timeout_s=10, what="the tool running"
            )
            (workdir / "workspaces" / CONV / "go").touch()
            final = await answer(bus)
    assert busy.fallback == "spare"  # `/status`: ` · fallback spare active`
    assert told.text == (
        "⚠️ main is unavailable (HTTP 503 from 127.0.0.1 after 2 tries: overloaded); "
        "using spare for this turn."
    )
    assert (told.out_id, told.settles) == (subjects.fallback_out_id(f"{SESSION}_t1"), 0)
    assert final.text == "Spare speaking."
    assert [request.body["model"] for request in llm.requests] == ["gpt-main"] * 2 + [
        "gpt-spare"
    ] * 2
    events = await bus.stored(subjects.HISTORY_STREAM, subjects.history(SESSION), HISTORY)
    assert {e.model for e in events if isinstance(e, AssistantMessage)} == {"spare"}


async def running_tools(bus) -> SessionStatus | None:
    query = msgspec.json.encode(StatusQuery(session_id=SESSION))
    found = STATUS.decode((await bus.nc.request(subjects.session_control(SESSION), query)).data)
    return found if found.activity.startswith("running") else None


async def test_each_calls_usage_and_cost_is_told_and_the_turn_records_its_sum(
    bus, workdir, nats_access
):
    spent = TokenCounts(prompt_tokens=1_000, completion_tokens=100, cached_tokens=400)
    reported = TokenCounts(prompt_tokens=2_000, completion_tokens=50, cost=0.5)  # OpenRouter's
    async with llm_api(api_key="k") as llm:
        llm.script(
            tool_calls(tool_call("shell", {"command": "true"}), usage=spent),
            reply("Done.", usage=reported),
        )
        settings = config(llm.base_url)
        prices = {"input": 2.0, "cached_input": 0.5, "output": 10.0}
        settings["models"]["main"]["prices"] = prices  # type: ignore[index]
        runtime = make_runtime(settings, workdir, nats_access)
        await bus.watch(OUT)
        await bus.watch(subjects.usage_event(CONV))
        async with running(runtime, run_session, run_tools):
            await say(bus, "spend", 1)
            await answer(bus)
            told = [await bus.next(subjects.usage_event(CONV), EVENT) for _ in range(2)]
    # 600 uncached at $2, 400 cached at $0.50 and 100 out at $10, per million
    first = Usage(input=600, cache_read=400, output=100, cost=(1_200 + 200 + 1_000) / 1e6)
    second = Usage(input=2_000, output=50, cost=0.5)
    assert [(e.model, e.usage, e.turn_id) for e in told if isinstance(e, ModelUsed)] == [
        ("main", first, f"{SESSION}_t1"),
        ("main", second, f"{SESSION}_t1"),
    ]
    events = await bus.stored(subjects.HISTORY_STREAM, subjects.history(SESSION), HISTORY)
    [finished] = [e for e in events if isinstance(e, TurnFinished)]
    assert (finished.usage.input, finished.usage.output) == (2_600, 150)
    assert finished.usage.cost == pytest.approx(0.5 + 0.0024)
