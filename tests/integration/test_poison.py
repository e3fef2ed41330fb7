"""No lane stalls on a poison message; a long outage dead-letters nothing (issue 11, finding 5).

The poison here is real stored data the handlers cannot read (a corrupt KV entry), so the
conversation and delivery services fail on it for real, each on a one-message-at-a-time lane.
"""

import asyncio

import msgspec

from services.conversation.service import run as run_conversation
from services.delivery.bot_api import open_api
from services.delivery.panels import Panels
from services.delivery.service import run as run_delivery
from services.delivery.telegram_sender import TelegramSender
from services.delivery.typing_indicator import TypingIndicators
from shared import bus as sc_bus
from shared import layout, subjects
from shared.config import BusConfig, TelegramConfig
from shared.ids import ConversationId, OutId
from shared.messages.contract import Chat
from shared.messages.events import EVENT, BadMessage, DeadLettered
from shared.messages.outbound import OUTPUT, SendReply
from shared.messages.session import SESSION_INPUT
from tests.kit.services import make_runtime, running
from tests.kit.telegram_api import telegram_api
from tests.kit.waiting import eventually
from tests.unit.shared.samples import message_received

MODELS = {"default_model": "m", "models": {"m": {"provider": "openai_chat", "model": "x"}}}
CHAT_ID = 77
CHAT = Chat(
    conversation_id=ConversationId("tg_77"), channel="telegram", kind="private", chat_id=CHAT_ID
)
OUT = subjects.outbound("telegram", "tg_77")


async def one_partition(bus) -> None:
    """The inbound stream laid out with one partition: every conversation shares one lane."""
    await bus.js.delete_stream(subjects.IN_STREAM)
    await layout.ensure(bus.js, BusConfig(in_partitions=1))


async def next_event(bus, kind: type) -> object:
    subject = subjects.DEAD_LETTER_EVENT if kind is DeadLettered else subjects.BAD_MESSAGE_EVENT
    event = await bus.next(subject, EVENT, timeout_s=15)
    assert isinstance(event, kind)
    return event


async def test_a_conversation_message_that_always_fails_is_dead_lettered_and_the_lane_moves_on(
    bus, workdir, nats_access
):
    await one_partition(bus)
    kv = await bus.js.key_value(subjects.CONV_BUCKET)
    await kv.put("cli_bad", b"not a conversation state")
    for subject in (subjects.DEAD_LETTER_EVENT, subjects.BAD_MESSAGE_EVENT):
        await bus.watch(subject)
    await bus.watch(subjects.session_input("cli_ok_fg1"))
    config = {**MODELS, "bus": {"in_partitions": 1, "max_deliver": 2}}
    async with running(make_runtime(config, workdir, nats_access), run_conversation):
        await bus.publish(subjects.inbound("cli", "cli_bad"), message_received("cli_bad", "a"))
        await bus.publish(subjects.inbound("cli", "cli_ok"), message_received("cli_ok", "b"))
        forwarded = await bus.next(subjects.session_input("cli_ok_fg1"), SESSION_INPUT, 15)
        dead = await next_event(bus, DeadLettered)
        bad = await next_event(bus, BadMessage)
    assert forwarded.message.text == "b"
    assert isinstance(dead, DeadLettered)
    assert (dead.service, dead.stream_seq, dead.deliveries) == ("conversation", 1, 2)
    assert "state of conversation 'cli_bad'" in dead.last_error
    assert isinstance(bad, BadMessage)
    assert bad.subject == f"{subjects.CONV_BUCKET}/cli_bad"


def reply(out_id: str, text: str) -> SendReply:
    return SendReply(chat=CHAT, out_id=OutId(out_id), text=text)


async def test_a_delivery_output_that_always_fails_is_dead_lettered_and_the_next_is_sent(
    bus, workdir, nats_access
):
    kv = await bus.js.key_value(subjects.DELIVERY_BUCKET)
    await kv.put(subjects.delivery_key("tg_77", "ans_bad"), b"{not a record")
    await bus.watch(subjects.DEAD_LETTER_EVENT)
    async with telegram_api() as tg:
        telegram = {"bot_token": tg.token, "api_base": tg.base_url, "allowed_user_ids": [1]}
        config = {**MODELS, "telegram": telegram, "bus": {"max_deliver": 2}}
        async with running(make_runtime(config, workdir, nats_access), run_delivery):
            await bus.publish(OUT, reply("ans_bad", "never sent"), msg_id="ans_bad")
            await bus.publish(OUT, reply("ans_next", "the next answer"), msg_id="ans_next")
            sent = await tg.next_sent(CHAT_ID, timeout_s=15)
            dead = await next_event(bus, DeadLettered)
    assert sent.text == "the next answer"
    assert tg.transcript(CHAT_ID) == ["the next answer"]
    assert isinstance(dead, DeadLettered)
    assert (dead.service, dead.deliveries) == ("delivery", 2)


async def test_an_hour_long_telegram_outage_dead_letters_nothing_and_delivers_everything_after(
    bus, nats_access
):
    [lane] = layout.durables(BusConfig())["delivery"]
    fast = msgspec.structs.replace(lane, max_deliver=3, max_backoff_s=0.01)  # a compressed clock
    kv = await bus.js.key_value(subjects.DELIVERY_BUCKET)
    stop = asyncio.Event()
    async with (
        telegram_api() as tg,
        open_api(tg.base_url, tg.token) as api,
        sc_bus.connected(nats_access, "delivery") as conn,
        asyncio.TaskGroup() as tasks,
    ):
        tg.fail_next("sendMessage", status=502, times=40)  # down for 40 tries: far past 3
        panels_kv = await bus.js.key_value(subjects.PANEL_BUCKET)
        telegram = TelegramConfig(bot_token=tg.token, api_base=tg.base_url)
        panels = Panels(api, panels_kv, telegram, tasks)
        sender = TelegramSender(conn, kv, api, TypingIndicators(api, tasks), panels)
        consuming = tasks.create_task(sc_bus.consume(conn, fast, OUTPUT, sender.handle, stop))
        for n in range(3):
            await bus.publish(OUT, reply(f"ans_{n}", f"answer {n}"), msg_id=f"ans_{n}")
        await eventually(lambda: len(tg.transcript(CHAT_ID)) == 3, timeout_s=20)
        stop.set()
        await consuming
    assert tg.transcript(CHAT_ID) == ["answer 0", "answer 1", "answer 2"]
    assert conn.counters["dead_letters"] == 0
    info = await bus.js.consumer_info(lane.stream, lane.durable)
    assert info.num_redelivered == 0
