"""Follow-ups, /cancel, /continue, /status and takeovers of the session service, with real NATS,
the real tools service and the fake OpenAI API."""

import msgspec
from nats.errors import NoRespondersError

from services.session.heads import CallEntry, Head, Journal
from services.session.ledger import NOT_RE_RUN
from shared import subjects
from shared.ids import SessionId, ToolCallId, TurnId
from shared.messages.contract import Chat, Sender, Workspace
from shared.messages.history import (
    HISTORY,
    AssistantMessage,
    HistoryEvent,
    Notice,
    SessionStarted,
    ToolCall,
    ToolResults,
    TurnFinished,
    TurnStarted,
    UserMessage,
)
from shared.messages.outbound import OUTPUT, SetReaction
from shared.messages.session import (
    STATUS,
    CancelTurn,
    ContinueTurn,
    ConversationSettings,
    NudgeSession,
    StatusQuery,
)
from tests.integration.test_session import (
    CONV,
    OUT,
    SESSION,
    answer,
    handle,
    say,
    session_stack,
    wake,
)
from tests.kit import processes
from tests.kit.llm_api import http_error, reply, tool_call
from tests.kit.waiting import eventually, eventually_async

CHAT = Chat(conversation_id=CONV, channel="cli", kind="cli")
SETTINGS = ConversationSettings(
    model="main", workspace=Workspace(pool="local", path=f"workspaces/{CONV}")
)
T1 = TurnId(f"{SESSION}_t1")


async def control(bus, message: CancelTurn | ContinueTurn) -> None:
    """As the conversation service sends a command: stored input, wake, nudge."""
    await bus.publish(
        subjects.session_input(SESSION),
        message,
        msg_id=subjects.session_input_msg_id(message.input_seq),
    )
    await nudge(bus)


async def nudge(bus) -> None:
    await bus.nc.publish(
        subjects.session_control(SESSION), msgspec.json.encode(NudgeSession(session_id=SESSION))
    )
    await wake(bus)


async def history(bus) -> list[HistoryEvent]:
    events: list[HistoryEvent] = await bus.stored(
        subjects.HISTORY_STREAM, subjects.history(SESSION), HISTORY
    )
    return events


async def status(bus, session: str = SESSION):
    """The session's status, once the session service listens."""
    query = msgspec.json.encode(StatusQuery(session_id=SessionId(session)))

    async def ask():
        try:
            return await bus.nc.request(subjects.session_control(session), query, timeout=5)
        except NoRespondersError:
            return None

    msg = await eventually_async(ask, timeout_s=10, what="a session service answering")
    return STATUS.decode(msg.data)


async def status_is(bus, state: str):
    found = await status(bus)
    return found if found.state == state else None


async def test_a_follow_up_during_a_tool_reaches_the_next_model_request(bus, workdir, nats_access):
    marker = workdir / "workspaces" / CONV / "started"
    async with session_stack(
        bus,
        workdir,
        nats_access,
        tool_call("shell", {"command": "touch started && sleep 3"}),
        reply("Done, and I saw your update."),
    ) as llm:
        await say(bus, "run the slow thing", 1)
        await eventually(marker.exists, timeout_s=10)
        await say(bus, "also mention the weather", 2)
        final = await answer(bus)
    assert final.text == "Done, and I saw your update."
    assert final.settles == 2  # the question and the follow-up it took in
    assert len(llm.requests) == 2
    assert llm.requests[1].last_user_text == "[Interrupted Follow-up]\nalso mention the weather"
    events = await history(bus)
    folded = [e for e in events if isinstance(e, UserMessage) and e.follow_ups]
    assert [f.follow_ups for f in folded] == [[2]]
    assert sum(isinstance(e, TurnStarted) for e in events) == 1  # not a second turn
    outputs = await bus.stored(subjects.OUT_CLI_STREAM, OUT, OUTPUT)
    reactions = [(o.out_id, o.emoji) for o in outputs if isinstance(o, SetReaction)]
    assert reactions == [(subjects.reaction_out_id(2), "👀")]  # the follow-up only


async def test_a_follow_up_cuts_a_long_shell_wait_short_and_the_command_runs_on(
    bus, workdir, nats_access
):
    """SPEC §5.0/§5.2: the follow-up does not wait for `wait_s` (300 s): the call returns at once
    with `interrupted: true`, the command runs on as a session, and the model reads both."""
    marker = workdir / "workspaces" / CONV / "started"
    command = {"command": "touch started && sleep 30.5", "wait_s": 300}
    async with session_stack(
        bus,
        workdir,
        nats_access,
        tool_call("shell", command),
        tool_call("shell_close", {"session": "sh1"}),
        reply("Stopped it, as you asked."),
    ) as llm:
        await say(bus, "run the slow thing", 1)
        await eventually(marker.exists, timeout_s=10)
        await say(bus, "never mind, stop it", 2)
        final = await answer(bus)
    assert final.text == "Stopped it, as you asked."
    interrupted = msgspec.json.decode(llm.requests[1].messages[-2].text)
    assert (interrupted["running"], interrupted["interrupted"]) == (True, True)
    assert interrupted["session"] == "sh1"
    assert llm.requests[1].last_user_text == "[Interrupted Follow-up]\nnever mind, stop it"
    closed = msgspec.json.decode(llm.requests[2].messages[-1].text)
    assert (closed["closed"], closed["session"]) == (True, "sh1")
    assert not processes.alive("sleep", "30.5")


async def test_cancel_during_a_long_command_kills_it_and_tells_the_user(bus, workdir, nats_access):
    sleeping = ("sleep", "30.25")  # a command line no other process here has
    async with session_stack(
        bus, workdir, nats_access, tool_call("shell", {"command": "sleep 30.25; true"})
    ) as llm:
        await say(bus, "wait a long time", 1)
        await eventually(lambda: processes.alive(*sleeping), 10, what="the command running")
        await control(bus, CancelTurn(session_id=SESSION, input_seq=2, chat=CHAT))
        final = await answer(bus)
        await eventually(lambda: not processes.alive(*sleeping), timeout_s=2, what="it ended")
        await control(bus, CancelTurn(session_id=SESSION, input_seq=3, chat=CHAT))
        nothing = await answer(bus)
    assert final.text == "⏹ Cancelled."
    assert final.settles == 2  # the question and the /cancel
    assert final.out_id == subjects.answer_out_id(T1)
    assert nothing.text == "Nothing is running."
    assert len(llm.requests) == 1
    events = await history(bus)
    [results] = [e for e in events if isinstance(e, ToolResults)]
    assert msgspec.json.decode(results.results[0].content) == {
        "error": "cancelled by user",
        "cancelled": True,
    }
    notices = [e.text for e in events if isinstance(e, Notice)]
    assert notices == ["[Cancelled] The user cancelled the previous turn."]
    assert isinstance(events[-1], TurnFinished)
    assert (events[-1].outcome, events[-1].cancel_seq) == ("cancelled", 2)


async def test_continue_resumes_a_recoverable_failure_and_only_that(bus, workdir, nats_access):
    async with session_stack(
        bus, workdir, nats_access, *[http_error(503, "overloaded")] * 2, reply("Back on track.")
    ) as llm:
        await control(
            bus, ContinueTurn(session_id=SESSION, input_seq=1, chat=CHAT, settings=SETTINGS)
        )
        nothing = await answer(bus)
        await say(bus, "hi", 2)
        failure = await answer(bus)
        await eventually_async(lambda: status_is(bus, "failed"))
        await control(
            bus, ContinueTurn(session_id=SESSION, input_seq=3, chat=CHAT, settings=SETTINGS)
        )
        continuing = await answer(bus)
        resumed = await answer(bus)
        idle = await eventually_async(lambda: status_is(bus, "idle"))
    assert nothing.text == "There is no interrupted turn to continue right now."
    assert "Send /continue to retry from here." in failure.text
    assert continuing.text == "▶️ Continuing…"
    assert resumed.text == "Back on track."
    assert [m.role for m in llm.requests[2].messages] == ["system", "user"]
    assert (idle.state, idle.turns) == ("idle", 2)
    started = [e for e in await history(bus) if isinstance(e, TurnStarted)]
    assert started[-1].continues == f"{SESSION}_t1"


async def test_status_comes_from_the_live_actor_or_from_the_head(bus, workdir, nats_access):
    marker = workdir / "workspaces" / CONV / "started"
    async with session_stack(
        bus,
        workdir,
        nats_access,
        tool_call("shell", {"command": "touch started && sleep 2"}),
        reply("Finished."),
    ):
        new = await status(bus, "cli_ses_fg9")
        await say(bus, "work", 1)
        await eventually(marker.exists, timeout_s=10)
        live = await status(bus)
        assert (await answer(bus)).text == "Finished."
    assert new.state == "new"
    assert (live.state, live.activity, live.turns) == ("running", "running 1 tool", 1)
    assert live.running_s is not None
    assert live.running_s > 0


async def cut_batch(bus, *calls: ToolCall, journal: list[CallEntry], takeovers: int = 0) -> None:
    """What an owner that died in the middle of a batch leaves: history and head."""
    events: list[HistoryEvent] = [
        SessionStarted(session_id=SESSION, session_type="foreground", model="main"),
        TurnStarted(turn_id=T1, input_seq=1),
        UserMessage(turn_id=T1, text="first", sender=Sender(display_name="Ada")),
        AssistantMessage(turn_id=T1, text="", model="main", tool_calls=list(calls)),
    ]
    for event in events:
        await bus.publish(subjects.history(SESSION), event)
    head = Head(
        cursor=await bus.publish(subjects.session_input(SESSION), handle("first", 1)),
        owner_revision=1,
        journal=Journal(
            turn_id=T1,
            phase="running_tools",
            batch=journal,
            takeovers=takeovers,
            chat=CHAT,
            settings=SETTINGS,
        ),
    )
    kv = await bus.js.key_value(subjects.SESSION_BUCKET)
    await kv.put(SESSION, msgspec.json.encode(head))


def call(n: int, name: str, arguments: dict[str, str]) -> ToolCall:
    return ToolCall(
        call_id=ToolCallId(f"c1_1_{n}"),
        provider_call_id=f"call_{n}",
        name=name,
        arguments=msgspec.json.encode(arguments).decode(),
    )


async def test_a_takeover_reruns_only_idempotent_calls_and_reports_the_others(
    bus, workdir, nats_access
):
    folder = workdir / "workspaces" / CONV
    folder.mkdir(parents=True)
    (folder / "notes.txt").write_text("kept\n")
    appended = call(0, "shell", {"command": "echo line >> log.txt"})
    read = call(1, "file_read", {"file_path": "notes.txt"})
    unsent = call(2, "shell", {"command": "echo unsent > unsent.txt"})
    sent = [
        CallEntry(call_id=appended.call_id, tool="shell", state="sent", idempotent=False),
        CallEntry(call_id=read.call_id, tool="file_read", state="sent", idempotent=True),
    ]
    await cut_batch(bus, appended, read, unsent, journal=sent)
    async with session_stack(bus, workdir, nats_access, reply("Recovered.")) as llm:
        await nudge(bus)
        final = await answer(bus)
    assert final.text == "Recovered."
    results = [msgspec.json.decode(m.text) for m in llm.requests[0].tool_messages]
    assert results[0] == msgspec.json.decode(NOT_RE_RUN)
    assert "kept" in results[1]["content"]
    assert results[2]["exit_code"] == 0
    assert not (folder / "log.txt").exists()  # never run twice, and not run here at all
    assert (folder / "unsent.txt").read_text() == "unsent\n"


async def test_a_turn_taken_over_three_times_ends_with_the_continue_hint(bus, workdir, nats_access):
    pending = call(0, "shell", {"command": "true"})
    await cut_batch(bus, pending, journal=[], takeovers=2)
    async with session_stack(bus, workdir, nats_access) as llm:
        await nudge(bus)
        final = await answer(bus)
    assert final.is_failure
    assert final.text == (
        "⚠️ This turn was interrupted by repeated restarts. Send /continue to try again."
    )
    assert llm.requests == []
    events = await history(bus)
    assert isinstance(events[-1], TurnFinished)
    assert (events[-1].error, events[-1].can_continue) == ("restarts", True)


async def test_an_unreadable_history_marks_the_session_broken(bus, workdir, nats_access):
    await bus.publish(subjects.history(SESSION), b"{not json")
    async with session_stack(bus, workdir, nats_access) as llm:
        await say(bus, "hello", 1)
        refused = await answer(bus)
        broken = await status(bus)
    assert "history cannot be read" in refused.text
    assert "/new" in refused.text
    assert broken.state == "broken"
    assert "cannot be read" in broken.broken_reason
    assert llm.requests == []


async def test_a_turn_cut_before_its_message_was_stored_is_resumed_with_it(
    bus, workdir, nats_access
):
    started: list[HistoryEvent] = [
        SessionStarted(session_id=SESSION, session_type="foreground", model="main"),
        TurnStarted(turn_id=T1, input_seq=1),
    ]  # the owner died here: no UserMessage, no journal, the input still past the cursor
    for event in started:
        await bus.publish(subjects.history(SESSION), event)
    await bus.publish(subjects.session_input(SESSION), handle("the lost words", 1))
    async with session_stack(bus, workdir, nats_access, reply("Heard you.")) as llm:
        await nudge(bus)
        final = await answer(bus)
    assert final.text == "Heard you."
    assert final.out_id == subjects.answer_out_id(T1)
    assert llm.requests[0].last_user_text == "the lost words"
    kinds = [type(e).__name__ for e in await history(bus)]
    assert kinds == [
        "SessionStarted",
        "TurnStarted",
        "UserMessage",
        "AssistantMessage",
        "TurnFinished",
    ]


async def test_the_conversations_sandbox_and_remote_choices_reach_the_runner(
    bus, workdir, nats_access
):
    """The settings stamped on the input (`/sandbox disabled`) decide how the command runs: in
    `disabled` mode it inherits the service's environment, which has no STELLACLAW_WORKSPACE."""
    seen = workdir / "workspaces" / CONV / "seen"
    command: dict[str, object] = {"command": 'echo "[${STELLACLAW_WORKSPACE:-none}]" > seen'}
    async with session_stack(bus, workdir, nats_access, tool_call("shell", command), reply("done")):
        settings = msgspec.structs.replace(SETTINGS, sandbox="disabled")
        message = msgspec.structs.replace(handle("where am I", 1), settings=settings)
        await bus.publish(
            subjects.session_input(SESSION), message, msg_id=subjects.session_input_msg_id(1)
        )
        await wake(bus)
        await answer(bus)
    assert seen.read_text(encoding="utf-8") == "[none]\n"
