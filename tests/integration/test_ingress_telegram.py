"""The Telegram ingress against a real nats-server and the test kit's Bot API server."""

import asyncio
import logging
from datetime import UTC, datetime

import msgspec
import pytest

from services.ingress_telegram.service import run
from shared import layout, subjects
from shared.config import BusConfig
from shared.errors import ConfigError
from shared.messages.inbound import (
    INBOUND,
    RECEIVED,
    AccessRequested,
    InboundMessage,
    MessageReceived,
)
from tests.kit.services import make_runtime, running
from tests.kit.telegram_api import Call, TelegramAPIServer
from tests.kit.waiting import eventually

ADA = 42  # the allowed user, in her private chat
PARTITIONS = 4  # as the `bus` fixture lays out SC_IN


def config(telegram: TelegramAPIServer | None, token: str = "") -> dict[str, object]:
    raw: dict[str, object] = {
        "default_model": "main",
        "models": {"main": {"provider": "openai_chat", "model": "test-model"}},
        "bus": {"in_partitions": PARTITIONS},
    }
    if telegram is not None:
        raw["telegram"] = {
            "bot_token": token or telegram.token,
            "api_base": telegram.base_url,
            "allowed_user_ids": [ADA],
        }
    return raw


async def stored_any(bus) -> list[tuple[dict[str, str], InboundMessage]]:
    """Every message SC_IN holds, of any kind, oldest first."""
    state = (await bus.js.stream_info(subjects.IN_STREAM)).state
    found = []
    for seq in range(state.first_seq, state.last_seq + 1) if state.messages else ():
        raw = await bus.js.get_msg(subjects.IN_STREAM, seq)
        found.append((raw.headers or {}, INBOUND.decode(raw.data)))
    return found


async def stored(bus) -> list[tuple[dict[str, str], MessageReceived]]:
    """Every message SC_IN holds, with its headers, oldest first."""
    state = (await bus.js.stream_info(subjects.IN_STREAM)).state
    found = []
    for seq in range(state.first_seq, state.last_seq + 1) if state.messages else ():
        raw = await bus.js.get_msg(subjects.IN_STREAM, seq)
        found.append((raw.headers or {}, RECEIVED.decode(raw.data)))
    return found


def getupdates_calls(telegram: TelegramAPIServer) -> list[Call]:
    return [call for call in telegram.calls if call.method == "getUpdates"]


async def test_a_message_lands_on_sc_in_with_its_update_msg_id(bus, telegram, workdir, nats_access):
    runtime = make_runtime(config(telegram), workdir, nats_access)
    async with running(runtime, run):
        update_id = telegram.user_says(ADA, "hello there", first_name="Ada")
        await eventually(lambda: telegram.confirmed_offset == update_id + 1, what="offset passed")
        ping = await bus.nc.request("$SRV.PING.ingress_telegram", b"", timeout=2)
    [(headers, message)] = await stored(bus)
    assert headers[subjects.MSG_ID_HEADER] == subjects.telegram_update_msg_id(
        telegram.bot_id, update_id
    )
    assert headers[subjects.CONV_HEADER] == "tg_42"
    assert message.chat.conversation_id == "tg_42"
    assert (message.chat.channel, message.chat.kind, message.chat.chat_id) == (
        "telegram",
        "private",
        ADA,
    )
    assert (message.sender.user_id, message.sender.display_name) == (ADA, "Ada")
    assert message.text == "hello there"
    assert msgspec.json.decode(ping.data)["name"] == "ingress_telegram"


async def test_the_bot_introduces_itself_at_start(bus, telegram, workdir, nats_access):
    runtime = make_runtime(config(telegram), workdir, nats_access)
    async with running(runtime, run):
        await eventually(lambda: getupdates_calls(telegram), what="polling started")
    methods = [call.method for call in telegram.calls]
    menus = [call.params for call in telegram.calls if call.method == "setMyCommands"]
    assert methods[:2] == ["getMe", "deleteWebhook"]
    assert [menu["scope"] for menu in menus] == [
        {"type": "all_private_chats"},
        {"type": "all_group_chats"},
    ]
    listed = [command["command"] for command in menus[0]["commands"]]
    assert listed == [
        "status",
        "model",
        "reasoning",
        "sandbox",
        "remote",
        "cancel",
        "continue",
        "compact",
        "new",
        "help",
    ]
    assert menus[1]["commands"] == menus[0]["commands"]
    assert getupdates_calls(telegram)[0].params["allowed_updates"] == [
        "message",
        "edited_message",
        "callback_query",
        "my_chat_member",
    ]


async def test_a_stranger_yields_only_an_access_request_without_content(
    bus, telegram, workdir, nats_access, caplog
):
    caplog.set_level(logging.INFO)
    runtime = make_runtime(config(telegram), workdir, nats_access)
    async with running(runtime, run):
        telegram.user_says(7, "let me in, my password is hunter2", first_name="Eve")
        allowed = telegram.user_says(ADA, "it's me")
        await eventually(lambda: telegram.confirmed_offset == allowed + 1, what="offset passed")
    [(_, request), (_, message)] = await stored_any(bus)
    assert isinstance(request, AccessRequested)
    assert (request.chat.conversation_id, request.sender.user_id) == ("tg_7", 7)
    assert request.sender.display_name == "Eve"
    assert not request.wants_admin
    assert isinstance(message, MessageReceived)
    assert message.text == "it's me"
    raw = [(await bus.js.get_msg(subjects.IN_STREAM, seq)).data for seq in (1, 2)]
    assert not any(b"hunter2" in data for data in raw)
    assert "hunter2" not in caplog.text
    assert telegram.reactions(7) == []  # nothing acknowledged to a stranger


async def test_a_replayed_update_is_not_published_again_after_a_restart(
    bus, telegram, workdir, nats_access
):
    runtime = make_runtime(config(telegram), workdir, nats_access)
    async with running(runtime, run):
        first = telegram.user_says(ADA, "first")
        await eventually(lambda: telegram.confirmed_offset == first + 1, what="offset passed")
    # a new SC_IN has no dedupe memory: only the mark in sc_ingress can stop the replay now
    await bus.js.delete_stream(subjects.IN_STREAM)
    await layout.ensure(bus.js, BusConfig(in_partitions=PARTITIONS))
    telegram.replay(first)
    second = telegram.user_says(ADA, "second")
    async with running(runtime, run):
        await eventually(lambda: telegram.confirmed_offset == second + 1, what="offset passed")
    assert [message.text for _, message in await stored(bus)] == ["second"]


async def test_the_offset_passes_an_update_only_after_its_publish_is_acked(
    bus, telegram, workdir, nats_access, caplog
):
    await bus.js.delete_stream(subjects.IN_STREAM)  # publishes find no stream to ack them
    update_id = telegram.user_says(ADA, "keep me")
    runtime = make_runtime(config(telegram), workdir, nats_access)
    async with running(runtime, run):
        await eventually(lambda: "not acknowledged" in caplog.text, what="a refused publish")
        assert telegram.confirmed_offset is None
        assert len(getupdates_calls(telegram)) == 1
        await layout.ensure(bus.js, BusConfig(in_partitions=PARTITIONS))
        await eventually(lambda: telegram.confirmed_offset == update_id + 1, what="offset passed")
    assert [message.text for _, message in await stored(bus)] == ["keep me"]


async def test_stop_ends_a_pending_long_poll_promptly(bus, telegram, workdir, nats_access):
    runtime = make_runtime(config(telegram), workdir, nats_access)
    loop = asyncio.get_running_loop()
    async with running(runtime, run, stop_timeout_s=5):
        await eventually(lambda: getupdates_calls(telegram), what="a long poll")
        stopping_at = loop.time()
    assert loop.time() - stopping_at < 2


async def test_without_a_telegram_section_the_service_refuses_to_start(workdir, nats_access):
    runtime = make_runtime(config(None), workdir, nats_access)
    with pytest.raises(ConfigError, match=r"^config: telegram: not configured"):
        await run(runtime, asyncio.Event())


async def test_a_refused_token_is_a_config_error(bus, telegram, workdir, nats_access):
    runtime = make_runtime(config(telegram, token="1:revoked"), workdir, nats_access)
    with pytest.raises(ConfigError, match=r"telegram\.bot_token: .*401"):
        await run(runtime, asyncio.Event())


async def test_a_location_is_text_and_a_message_with_nothing_to_read_is_skipped(
    bus, telegram, workdir, nats_access
):
    runtime = make_runtime(config(telegram), workdir, nats_access)
    location = {"location": {"latitude": 48.2, "longitude": 16.4}}
    contact = {"contact": {"phone_number": "+43 1 234", "first_name": "Bo", "last_name": "Li"}}
    async with running(runtime, run):
        telegram.user_sends(ADA, location)
        telegram.user_sends(ADA, contact)
        telegram.user_sends(ADA, {"new_chat_title": "a service message"})
        poll = telegram.user_sends(ADA, {"dice": {"emoji": "🎲", "value": 3}})
        await eventually(lambda: telegram.confirmed_offset == poll + 1, what="offset passed")
    found = [message for _, message in await stored(bus)]
    assert [message.text for message in found] == [
        "[Location: 48.2, 16.4]",
        "[Contact: Bo Li +43 1 234]",
        "",
    ]
    assert found[2].notices == ["I can't read this kind of message yet."]


async def test_an_edit_and_a_reply_reach_sc_in_as_spec_12_3_words_them(
    bus, telegram, workdir, nats_access
):
    runtime = make_runtime(config(telegram), workdir, nats_access)
    async with running(runtime, run):
        first = telegram.user_says(ADA, "meet at 5")
        original = telegram.message_id(first)
        sender = {"id": ADA, "is_bot": False, "first_name": "Ada"}
        chat = {"id": ADA, "type": "private", "first_name": "Ada"}
        now = int(datetime.now(UTC).timestamp())
        edited = {"message_id": original, "from": sender, "chat": chat, "date": now}
        telegram.queue_update({"edited_message": edited | {"text": "meet at 6", "edit_date": now}})
        replied = {
            "message_id": original,
            "from": sender,
            "chat": chat,
            "date": now,
            "text": "meet at 6",
        }
        last = telegram.user_sends(ADA, {"text": "or 7?", "reply_to_message": replied})
        await eventually(lambda: telegram.confirmed_offset == last + 1, what="offset passed")
    texts = [message.text for _, message in await stored(bus)]
    assert texts == [
        "meet at 5",
        "[Edited Message]\nmeet at 6",
        '[Reply to Ada: "meet at 6"]\nor 7?',
    ]
