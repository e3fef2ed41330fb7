"""Per-chat lanes of the delivery service (SPEC §12.9) with a real nats-server and the test kit's
Bot API server: a chat told to wait holds up no other, order within a chat holds, and a chat
with more waiting than its share of the window takes its outputs back in order."""

import asyncio
from pathlib import Path

from services.delivery import lanes
from services.delivery.service import run
from shared import subjects
from shared.bus import BusAccess
from shared.ids import ConversationId, OutId
from shared.lifecycle import Runtime
from shared.messages.contract import Chat
from shared.messages.outbound import SendReply
from tests.kit.services import make_runtime, running
from tests.kit.telegram_api import TelegramAPIServer, telegram_api
from tests.kit.waiting import eventually

SLOW, FAST = 5101, 5102
MODELS = {"default_model": "m", "models": {"m": {"provider": "openai_chat", "model": "x"}}}


def runtime_for(tg: TelegramAPIServer, workdir: Path, nats_access: BusAccess) -> Runtime:
    telegram = {"bot_token": tg.token, "api_base": tg.base_url, "allowed_user_ids": [1]}
    return make_runtime({**MODELS, "telegram": telegram}, workdir, nats_access)


def chat(chat_id: int) -> Chat:
    conv = ConversationId(f"tg_{chat_id}")
    return Chat(conversation_id=conv, channel="telegram", kind="private", chat_id=chat_id)


async def say(bus, chat_id: int, out_id: str, text: str) -> None:
    answer = SendReply(chat=chat(chat_id), out_id=OutId(out_id), text=text)
    subject = subjects.outbound("telegram", f"tg_{chat_id}")
    await bus.publish(subject, answer, msg_id=out_id)


async def test_a_65_s_retry_after_in_one_chat_does_not_delay_another(bus, workdir, nats_access):
    loop = asyncio.get_running_loop()
    async with telegram_api() as tg, running(runtime_for(tg, workdir, nats_access), run):
        tg.fail_next("sendMessage", retry_after=65)
        await say(bus, SLOW, "ans_slow", "you will wait")
        await eventually(lambda: tg.calls and tg.calls[-1].method == "sendMessage")
        started = loop.time()
        await say(bus, FAST, "ans_fast", "no waiting here")
        sent = await tg.next_sent(FAST)
        took_s = loop.time() - started
        assert sent.text == "no waiting here"
        assert tg.transcript(SLOW) == []  # still waiting out its 65 s
    assert took_s < 0.1


async def test_order_within_a_chat_holds_past_its_share_of_the_window(bus, workdir, nats_access):
    count = lanes.CHAT_CAP + 8  # more than one chat may hold: some are handed back
    async with telegram_api() as tg, running(runtime_for(tg, workdir, nats_access), run):
        tg.delay("sendMessage", 0.05)  # the lane fills while the first ones go out
        for n in range(count):
            await say(bus, SLOW, f"ans_{n}", f"message {n:02d}")
        await eventually(lambda: len(tg.transcript(SLOW)) == count, timeout_s=30)
    assert tg.transcript(SLOW) == [f"message {n:02d}" for n in range(count)]
