"""The conversation service with a real nats-server: routing, commands, state by CAS."""

from datetime import UTC, datetime, timedelta

import msgspec
from nats.aio.msg import Msg

from services.conversation.service import run
from services.conversation.state import STATE
from shared import subjects
from shared.ids import ConversationId, SessionId, TurnId
from shared.messages.events import EVENT, ModelUsed
from shared.messages.history import Usage
from shared.messages.outbound import OUTPUT, SendReply
from shared.messages.session import (
    CONTROL,
    SESSION_INPUT,
    WAKE,
    CancelTurn,
    ContinueTurn,
    Control,
    HandleMessage,
    SessionStatus,
    StatusQuery,
)
from shared.messages.tools import END_WORK
from tests.kit.nats import TestBus
from tests.kit.services import make_runtime, running
from tests.unit.shared.samples import message_received

MODEL = {"provider": "openai_chat", "model": "gpt-test", "base_url": "http://x/v1"}
CONFIG: dict[str, object] = {
    "default_model": "main",
    "models": {"main": MODEL},
    "bus": {"in_partitions": 4},
}


async def answer_status(bus: TestBus, session: str, answer: bytes) -> list[Control]:
    """Stand in for the session service on its control lane (its wire contract): answer every
    request with `answer`; returns the list of what was asked, filled as requests come."""
    asked: list[Control] = []

    async def respond(msg: Msg) -> None:
        if msg.reply:
            asked.append(CONTROL.decode(msg.data))
            await msg.respond(answer)

    await bus.nc.subscribe(subjects.session_control(session), cb=respond)
    await bus.nc.flush()
    return asked


async def test_a_message_goes_to_the_foreground_session_with_settings(bus, workdir, nats_access):
    runtime = make_runtime(CONFIG, workdir, nats_access)
    await bus.watch(subjects.session_input("cli_ada_fg1"))
    async with running(runtime, run):
        seq = await bus.publish(
            subjects.inbound("cli", "cli_ada"), message_received("cli_ada", "hi")
        )
        handle = await bus.next(subjects.session_input("cli_ada_fg1"), SESSION_INPUT)
    assert handle.input_seq == seq
    assert handle.message.text == "hi"
    assert handle.settings.model == "main"
    assert handle.settings.workspace.path == "workspaces/cli_ada"
    assert handle.settings.sandbox == "auto"  # the server default, resolved by the runner
    entry = await (await bus.js.key_value(subjects.CONV_BUCKET)).get("cli_ada")
    assert entry.value is not None
    assert STATE.decode(entry.value).messages == 1


async def test_status_without_a_session_service_says_the_state_is_unknown(
    bus, workdir, nats_access
):
    runtime = make_runtime(CONFIG, workdir, nats_access)
    out = subjects.outbound("cli", "cli_bo")
    await bus.watch(out)
    async with running(runtime, run):
        await bus.publish(subjects.inbound("cli", "cli_bo"), message_received("cli_bo", "hello"))
        await bus.publish(subjects.inbound("cli", "cli_bo"), message_received("cli_bo", "/status"))
        reply = await bus.next(out, OUTPUT)
    assert isinstance(reply, SendReply)
    assert reply.text.splitlines() == [
        "📊 Status",
        "Model: main (openai_chat · gpt-test)",
        "Reasoning: default",
        "Session: cli_bo_fg1 · state unknown (no session service answered)",
        "Sandbox: auto (no tool runner answered) · Remote: local",
        "Workspace: workspaces/cli_bo (pool local)",
    ]


async def test_status_shows_what_the_session_answers(bus, workdir, nats_access):
    runtime = make_runtime(CONFIG, workdir, nats_access)
    out = subjects.outbound("cli", "cli_bea")
    await bus.watch(out)
    answer = SessionStatus(
        session_id=SessionId("cli_bea_fg1"),
        state="running",
        turns=3,
        started_at=datetime(2025, 3, 1, 9, 30, tzinfo=UTC),
        running_s=65.4,
        activity="calling the model",
        usage=Usage(input=5_000, cache_read=40_200, output=1_234, cost=0.0421),
        context_tokens=46_434,
        context_is_reported=True,
        fallback="spare",
    )
    queries = await answer_status(bus, "cli_bea_fg1", msgspec.json.encode(answer))
    now = datetime.now(UTC)
    for conv, at, cost in [
        ("cli_bea", now - timedelta(minutes=5), 0.5),
        ("cli_bea", now - timedelta(hours=23), 0.75),
        ("cli_bea", now - timedelta(hours=25), 9.0),  # older than a day: not summed
        ("cli_other", now, 9.0),  # another conversation's
    ]:
        used = Usage(input=1_000, cache_read=500, output=100, cost=cost)
        fact = ModelUsed(
            conversation_id=ConversationId(conv),
            session_id=SessionId(f"{conv}_fg1"),
            turn_id=TurnId("t1"),
            model="main",
            usage=used,
            at=at,
        )
        await bus.publish(subjects.usage_event(conv), fact)
    async with running(runtime, run):
        await bus.publish(
            subjects.inbound("cli", "cli_bea"), message_received("cli_bea", "/status@bot")
        )
        reply = await bus.next(out, OUTPUT)
    assert isinstance(reply, SendReply)
    assert reply.text.splitlines() == [
        "📊 Status",
        "Model: main (openai_chat · gpt-test) · fallback spare active",
        "Reasoning: default",
        "Session: cli_bea_fg1 · 3 turns · since 2025-03-01",
        "State: running 1m 05s (calling the model)",
        "Context: 46.4k / 128k tokens (36 %) · compacts at 115.2k · reported",
        "Usage, this session: 45.2k in (40.2k cached) · 1.2k out · $0.0421",
        "Usage, 24 h: 3k in (1k cached) · 200 out · $1.25",
        "Sandbox: auto (no tool runner answered) · Remote: local",
        "Workspace: workspaces/cli_bea (pool local)",
    ]
    assert queries == [StatusQuery(session_id=SessionId("cli_bea_fg1"))]


async def test_a_bad_status_answer_is_reported_and_status_says_the_state_is_unknown(
    bus, workdir, nats_access
):
    runtime = make_runtime(CONFIG, workdir, nats_access)
    out = subjects.outbound("cli", "cli_bix")
    await bus.watch(out)
    await bus.watch(subjects.BAD_MESSAGE_EVENT)
    await answer_status(bus, "cli_bix_fg1", b"\x00 not a status")
    async with running(runtime, run):
        inbound = subjects.inbound("cli", "cli_bix")
        await bus.publish(inbound, message_received("cli_bix", "/status"))
        reply = await bus.next(out, OUTPUT)
        bad = await bus.next(subjects.BAD_MESSAGE_EVENT, EVENT)
        await bus.publish(inbound, message_received("cli_bix", "/help"))
        after = await bus.next(out, OUTPUT)
    assert isinstance(reply, SendReply)
    assert "Session: cli_bix_fg1 · state unknown (no session service answered)" in (
        reply.text.splitlines()
    )
    assert bad.service == "conversation"
    assert bad.subject == subjects.session_control("cli_bix_fg1")
    assert isinstance(after, SendReply)
    assert after.text.startswith("Stellaclaw — commands")


async def test_help_lists_the_commands_that_exist(bus, workdir, nats_access):
    runtime = make_runtime(CONFIG, workdir, nats_access)
    out = subjects.outbound("cli", "cli_bud")
    await bus.watch(out)
    async with running(runtime, run):
        await bus.publish(subjects.inbound("cli", "cli_bud"), message_received("cli_bud", "/help"))
        reply = await bus.next(out, OUTPUT)
    assert isinstance(reply, SendReply)
    assert reply.text == "\n".join(
        (
            "Stellaclaw — commands",
            "/status — model, context, usage and running work",
            "/model [name] — show or switch the model",
            "/reasoning [level] — reasoning effort for this chat",
            "/sandbox [mode] — how commands are isolated",
            "/remote [name [path] | select | off] — run tools on an SSH remote",
            "/cancel — stop the running turn (/cancel all: background tasks too)",
            "/continue — resume an interrupted or failed turn",
            "/compact — compact the context now",
            "/new — start a fresh session (files are kept)",
            "/help — this list",
            "Send a message while I work to steer me; I read it at the next step.",
        )
    )


async def test_cancel_and_continue_reach_the_foreground_session_with_a_wake_and_a_nudge(
    bus, workdir, nats_access
):
    runtime = make_runtime(CONFIG, workdir, nats_access)
    session = "cli_gus_fg1"
    out = subjects.outbound("cli", "cli_gus")
    lanes = (subjects.session_input(session), subjects.wake(session))
    for subject in (*lanes, subjects.session_control(session), out):
        await bus.watch(subject)
    texts = ("/cancel", "/cancel all", "/continue", "/cancel now")
    async with running(runtime, run):
        seqs = [
            await bus.publish(subjects.inbound("cli", "cli_gus"), message_received("cli_gus", t))
            for t in texts
        ]
        sent = [await bus.next(lanes[0], SESSION_INPUT) for _ in range(3)]
        wakes = [await bus.next(lanes[1], WAKE) for _ in range(3)]
        nudges = [await bus.next(subjects.session_control(session), CONTROL) for _ in range(3)]
        usage = await bus.next(out, OUTPUT)  # the first reply: none for the three before
        stored = await bus.stored(subjects.SESSION_STREAM, lanes[0], SESSION_INPUT)
    assert stored == sent
    first, everything, resume = sent
    assert isinstance(first, CancelTurn)
    assert (first.input_seq, first.everything, first.reason) == (seqs[0], False, "cancel")
    assert first.chat.conversation_id == "cli_gus"
    assert isinstance(everything, CancelTurn)
    assert (everything.input_seq, everything.everything) == (seqs[1], True)
    assert isinstance(resume, ContinueTurn)
    assert resume.input_seq == seqs[2]
    assert resume.settings.model == "main"
    assert {wake.session_id for wake in wakes} == {session}
    assert [n.session_id for n in nudges] == [session] * 3
    seqs_stored = [n.seq for n in nudges]  # each names its input's place in the stream
    assert seqs_stored == sorted(set(seqs_stored))
    assert seqs_stored[0] > 0
    assert [w.seq for w in wakes] == seqs_stored
    assert isinstance(usage, SendReply)
    assert usage.text == "Usage: /cancel [all]"
    assert usage.out_id == subjects.reply_out_id(seqs[3])


async def test_new_binds_a_fresh_session_and_cancels_the_old_ones_turn(bus, workdir, nats_access):
    runtime = make_runtime(CONFIG, workdir, nats_access)
    old, fresh = "cli_hal_fg1", "cli_hal_fg2"
    out = subjects.outbound("cli", "cli_hal")
    for subject in (subjects.session_input(old), subjects.session_input(fresh), out):
        await bus.watch(subject)
    await bus.watch(subjects.session_control(old))
    await bus.watch(subjects.tool_end("cli_hal"))
    inbound = subjects.inbound("cli", "cli_hal")
    async with running(runtime, run):
        await bus.publish(inbound, message_received("cli_hal", "before"))
        before = await bus.next(subjects.session_input(old), SESSION_INPUT)
        new_seq = await bus.publish(inbound, message_received("cli_hal", "/new"))
        reply = await bus.next(out, OUTPUT)
        ended = await bus.next(subjects.tool_end("cli_hal"), END_WORK)  # shells, downloads
        cancel = await bus.next(subjects.session_input(old), SESSION_INPUT)
        await bus.publish(inbound, message_received("cli_hal", "after"))
        after = await bus.next(subjects.session_input(fresh), SESSION_INPUT)
        nudges = [await bus.next(subjects.session_control(old), CONTROL) for _ in range(2)]
    assert isinstance(before, HandleMessage)
    assert isinstance(reply, SendReply)
    assert reply.text == (
        "🆕 New session started. Files and memory are kept; the previous history is archived."
    )
    assert cancel == CancelTurn(
        session_id=SessionId(old), input_seq=new_seq, chat=before.message.chat, reason="new"
    )
    assert isinstance(after, HandleMessage)
    assert after.message.text == "after"
    assert ended.conversation_id == "cli_hal"
    assert [n.session_id for n in nudges] == [old] * 2
    assert 0 < nudges[0].seq < nudges[1].seq
    entry = await (await bus.js.key_value(subjects.CONV_BUCKET)).get("cli_hal")
    assert entry.value is not None
    conversation = STATE.decode(entry.value)
    assert (conversation.foreground, conversation.session_counter) == (fresh, 2)
    assert conversation.new_session_seq == new_seq


async def test_an_unknown_command_names_itself_and_help(bus, workdir, nats_access):
    runtime = make_runtime(CONFIG, workdir, nats_access)
    out = subjects.outbound("cli", "cli_cy")
    await bus.watch(out)
    async with running(runtime, run):
        await bus.publish(
            subjects.inbound("cli", "cli_cy"), message_received("cli_cy", "/frobnicate")
        )
        reply = await bus.next(out, OUTPUT)
    assert isinstance(reply, SendReply)
    assert reply.text == "Unknown command: /frobnicate. Send /help for the list."


async def test_a_malformed_message_is_terminated_and_the_next_one_is_routed(
    bus, workdir, nats_access
):
    runtime = make_runtime(CONFIG, workdir, nats_access)
    await bus.watch(subjects.BAD_MESSAGE_EVENT)
    await bus.watch(subjects.session_input("cli_dee_fg1"))
    async with running(runtime, run):
        await bus.publish(subjects.inbound("cli", "cli_dee"), b"{not json")
        await bus.publish(subjects.inbound("cli", "cli_dee"), message_received("cli_dee", "after"))
        bad = await bus.next(subjects.BAD_MESSAGE_EVENT, EVENT)
        handle = await bus.next(subjects.session_input("cli_dee_fg1"), SESSION_INPUT)
        counters = await bus.nc.request(subjects.counters("conversation"), b"", timeout=2)
    assert bad.service == "conversation"
    assert handle.message.text == "after"
    assert msgspec.json.decode(counters.data)["bad_messages"] == 1


async def test_a_conversation_whose_model_left_the_config_switches_to_the_default(
    bus, workdir, nats_access
):
    old = {**CONFIG, "models": {"main": MODEL, "old": MODEL}}
    out = subjects.outbound("cli", "cli_eve")
    await bus.watch(out)
    async with running(make_runtime({**old, "default_model": "old"}, workdir, nats_access), run):
        await bus.publish(subjects.inbound("cli", "cli_eve"), message_received("cli_eve", "one"))
        await bus.next(subjects.session_input("cli_eve_fg1"), SESSION_INPUT)
    async with running(make_runtime(CONFIG, workdir, nats_access), run):
        await bus.publish(subjects.inbound("cli", "cli_eve"), message_received("cli_eve", "two"))
        notice = await bus.next(out, OUTPUT)
        handle = await bus.next(subjects.session_input("cli_eve_fg1"), SESSION_INPUT)
    assert isinstance(notice, SendReply)
    assert notice.text == "Model old is no longer configured; switched to main."
    assert handle.settings.model == "main"


async def test_a_change_made_by_another_instance_is_not_overwritten(bus, workdir, nats_access):
    two_models = {**CONFIG, "models": {"main": MODEL, "other": MODEL}}
    runtime = make_runtime(two_models, workdir, nats_access)
    kv = await bus.js.key_value(subjects.CONV_BUCKET)
    await bus.watch(subjects.session_input("cli_fay_fg1"))
    async with running(runtime, run):
        await bus.publish(subjects.inbound("cli", "cli_fay"), message_received("cli_fay", "one"))
        await bus.next(subjects.session_input("cli_fay_fg1"), SESSION_INPUT)
        entry = await kv.get("cli_fay")
        assert entry.value is not None
        elsewhere = msgspec.structs.replace(STATE.decode(entry.value), model="other")
        await kv.update("cli_fay", msgspec.json.encode(elsewhere), last=entry.revision)
        await bus.publish(subjects.inbound("cli", "cli_fay"), message_received("cli_fay", "two"))
        handle = await bus.next(subjects.session_input("cli_fay_fg1"), SESSION_INPUT)
    assert handle.settings.model == "other"
    final = await kv.get("cli_fay")
    assert final.value is not None
    assert STATE.decode(final.value).messages == 2
