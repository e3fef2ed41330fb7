"""The Telegram ingress in groups and forum topics, with admins and the bot's membership, against
a real nats-server and the test kit's Bot API server (SPEC §12.2, §12.3, §12.5)."""

import asyncio

from services.ingress_telegram.service import run
from shared import subjects
from shared.messages.inbound import (
    INBOUND,
    AccessRequested,
    ChatRemoved,
    InboundMessage,
    MessageReceived,
)
from tests.kit.services import make_runtime, running
from tests.kit.telegram_api import TelegramAPIServer
from tests.kit.waiting import eventually

ADA = 42  # allowed
TEAM = -100777  # a forum supergroup
EVE = 9  # a stranger


def config(telegram: TelegramAPIServer, **extra: object) -> dict[str, object]:
    return {
        "default_model": "main",
        "models": {"main": {"provider": "openai_chat", "model": "test-model"}},
        "bus": {"in_partitions": 4},
        "telegram": {
            "bot_token": telegram.token,
            "api_base": telegram.base_url,
            "allowed_user_ids": [ADA],
        }
        | extra,
    }


async def inbound(bus) -> list[InboundMessage]:
    state = (await bus.js.stream_info(subjects.IN_STREAM)).state
    found = []
    for seq in range(state.first_seq, state.last_seq + 1) if state.messages else ():
        found.append(INBOUND.decode((await bus.js.get_msg(subjects.IN_STREAM, seq)).data))
    return found


async def texts(bus) -> list[str]:
    return [m.text for m in await inbound(bus) if isinstance(m, MessageReceived)]


async def test_a_group_message_is_taken_only_when_it_is_for_the_bot(
    bus, telegram, workdir, nats_access
):
    bot = telegram.bot_username
    runtime = make_runtime(config(telegram), workdir, nats_access)
    say = {"user_id": ADA, "chat_type": "supergroup"}
    async with running(runtime, run):
        telegram.user_says(TEAM, "lunch anyone?", **say)
        telegram.user_says(TEAM, f"@{bot} what is 2+2?", **say)
        telegram.user_says(TEAM, "/status@other_bot", **say)
        telegram.user_says(TEAM, f"/status@{bot}", **say)
        telegram.user_says(TEAM, f"@{bot} /model", **say)
        last = telegram.user_says(TEAM, "/help", **say)
        await eventually(lambda: telegram.confirmed_offset == last + 1, what="offset passed")
    assert await texts(bus) == ["what is 2+2?", f"/status@{bot}", "/model", "/help"]
    [first, *_] = await inbound(bus)
    assert isinstance(first, MessageReceived)
    assert (first.chat.conversation_id, first.chat.kind) == (f"tg_{TEAM}", "group")
    assert first.bot_name  # `/start` greets with it


async def test_a_reply_to_the_bot_or_a_chat_of_two_is_taken_and_all_takes_everything(
    bus, telegram, workdir, nats_access
):
    runtime = make_runtime(config(telegram), workdir, nats_access)
    say = {"user_id": ADA, "chat_type": "supergroup"}
    pair = -100888
    telegram.set_member_count(pair, 2)
    async with running(runtime, run):
        telegram.user_says(pair, "just us", **say)
        last = telegram.user_says(TEAM, "not for the bot", **say)
        await eventually(lambda: telegram.confirmed_offset == last + 1, what="offset passed")
    assert await texts(bus) == ["just us"]
    runtime = make_runtime(config(telegram, group_trigger="all"), workdir, nats_access)
    async with running(runtime, run):
        last = telegram.user_says(TEAM, "everything counts", **say)
        await eventually(lambda: telegram.confirmed_offset == last + 1, what="offset passed")
    assert (await texts(bus))[-1] == "everything counts"


async def test_two_forum_topics_are_two_conversations(bus, telegram, workdir, nats_access):
    bot = telegram.bot_username
    runtime = make_runtime(config(telegram), workdir, nats_access)
    say = {"user_id": ADA, "chat_type": "supergroup"}
    async with running(runtime, run):
        telegram.user_says(TEAM, f"@{bot} one", message_thread_id=11, **say)
        last = telegram.user_says(TEAM, f"@{bot} two", message_thread_id=12, **say)
        await eventually(lambda: telegram.confirmed_offset == last + 1, what="offset passed")
    found = [m for m in await inbound(bus) if isinstance(m, MessageReceived)]
    assert [(m.chat.conversation_id, m.chat.kind, m.chat.thread_id) for m in found] == [
        (f"tg_{TEAM}_t11", "topic", 11),
        (f"tg_{TEAM}_t12", "topic", 12),
    ]


async def test_strangers_in_groups_ask_access_and_the_ack_reaction_marks_taken_messages(
    bus, telegram, workdir, nats_access
):
    bot = telegram.bot_username
    runtime = make_runtime(config(telegram), workdir, nats_access)
    async with running(runtime, run):
        telegram.user_says(TEAM, "chatter", user_id=EVE, chat_type="supergroup")
        asked = telegram.user_says(TEAM, f"@{bot} hi", user_id=EVE, chat_type="supergroup")
        taken = telegram.user_says(ADA, "hello")
        await eventually(lambda: telegram.confirmed_offset == taken + 1, what="offset passed")
        await eventually(lambda: telegram.reactions(ADA), what="the ack reaction")
    request, message = await inbound(bus)
    assert isinstance(request, AccessRequested)
    assert (request.chat.conversation_id, request.chat_title) == (
        f"tg_{TEAM}",
        "Stellaclaw testers",
    )
    assert isinstance(message, MessageReceived)
    assert telegram.reactions(ADA) == [(telegram.message_id(taken), "👀")]
    assert telegram.reactions(TEAM) == []
    assert asked


async def test_admin_authorize_from_a_stranger_asks_to_become_the_admin_when_there_is_none(
    bus, telegram, workdir, nats_access
):
    runtime = make_runtime(config(telegram, ack_reaction=""), workdir, nats_access)
    async with running(runtime, run):
        telegram.user_says(EVE, "/admin_authorize")
        last = telegram.user_says(ADA, "no reaction for me")
        await eventually(lambda: telegram.confirmed_offset == last + 1, what="offset passed")
    request, _ = await inbound(bus)
    assert isinstance(request, AccessRequested)
    assert request.wants_admin
    assert telegram.reactions(ADA) == []


async def test_the_bot_removed_from_a_group_ends_its_conversation(
    bus, telegram, workdir, nats_access
):
    runtime = make_runtime(config(telegram), workdir, nats_access)
    async with running(runtime, run):
        telegram.bot_removed(TEAM, status="kicked")
        telegram.bot_removed(ADA, status="kicked", chat_type="private")  # blocked: no removal
        last = telegram.bot_removed(-100999, status="left")
        await eventually(lambda: telegram.confirmed_offset == last + 1, what="offset passed")
    found = await inbound(bus)
    assert [type(m) for m in found] == [ChatRemoved, ChatRemoved]
    assert [m.chat.conversation_id for m in found] == [f"tg_{TEAM}", "tg_-100999"]


async def test_a_second_ingress_stands_by_and_polls_once_the_first_stops(
    bus, telegram, workdir, nats_access
):
    runtime = make_runtime(config(telegram), workdir, nats_access)
    first_stop, second_stop = asyncio.Event(), asyncio.Event()
    first = asyncio.create_task(run(runtime, first_stop))
    before = telegram.user_says(ADA, "to the first")
    await eventually(lambda: telegram.confirmed_offset == before + 1, what="the first polls")
    second = asyncio.create_task(run(runtime, second_stop))  # stands by: one poller per bot
    await eventually(lambda: getme_calls(telegram) == 2, what="the second started")
    first_stop.set()
    await first
    after = telegram.user_says(ADA, "to the second")
    await eventually(lambda: telegram.confirmed_offset == after + 1, what="the second polls")
    second_stop.set()
    await second
    assert await texts(bus) == ["to the first", "to the second"]
    assert [c.params.get("offset") for c in telegram.calls if c.method == "getUpdates"].count(
        None
    ) <= 2  # each poller started once from the server's offset


def getme_calls(telegram: TelegramAPIServer) -> int:
    return sum(1 for call in telegram.calls if call.method == "getMe")
