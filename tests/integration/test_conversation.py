"""The conversation service with a real nats-server: routing, commands, state by CAS."""

import msgspec

from services.conversation.service import run
from services.conversation.state import STATE
from shared import subjects
from shared.messages.events import EVENT
from shared.messages.outbound import OUTPUT, SendReply
from shared.messages.session import SESSION_INPUT
from tests.kit.services import make_runtime, running
from tests.unit.shared.samples import message_received

MODEL = {"provider": "openai_chat", "model": "gpt-test", "base_url": "http://x/v1"}
CONFIG: dict[str, object] = {
    "default_model": "main",
    "models": {"main": MODEL},
    "bus": {"in_partitions": 4},
}


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
    entry = await (await bus.js.key_value(subjects.CONV_BUCKET)).get("cli_ada")
    assert entry.value is not None
    assert STATE.decode(entry.value).messages == 1


async def test_status_is_answered_on_the_conversation_outbound_subject(bus, workdir, nats_access):
    runtime = make_runtime(CONFIG, workdir, nats_access)
    out = subjects.outbound("cli", "cli_bo")
    await bus.watch(out)
    async with running(runtime, run):
        await bus.publish(subjects.inbound("cli", "cli_bo"), message_received("cli_bo", "hello"))
        await bus.publish(subjects.inbound("cli", "cli_bo"), message_received("cli_bo", "/status"))
        reply = await bus.next(out, OUTPUT)
    assert isinstance(reply, SendReply)
    lines = reply.text.splitlines()
    assert lines[0] == "📊 Status"
    assert "Model: main (openai_chat · gpt-test)" in lines
    assert "Session: cli_bo_fg1" in lines[2]
    assert "Messages: 2" in lines


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
