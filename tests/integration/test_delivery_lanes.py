"""Per-chat lanes of the delivery service (SPEC §12.9) with a real nats-server and the test kit's
Bot API server: a chat told to wait holds up no other, order within a chat holds, and a chat
with more waiting than its share of the window takes its outputs back in order."""

import asyncio
from pathlib import Path

import msgspec

from services.delivery import lanes
from services.delivery.service import run
from shared import leases, subjects
from shared.bus import BusAccess
from shared.ids import ConversationId, OutId
from shared.lifecycle import Runtime
from shared.messages.contract import Chat
from shared.messages.outbound import SendReply
from tests.kit.services import make_runtime, running
from tests.kit.telegram_api import TelegramAPIServer, telegram_api
from tests.kit.waiting import eventually, eventually_async

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


async def test_a_chat_that_blocked_the_bot_gets_nothing_more_and_is_counted(
    bus, workdir, nats_access
):
    async with telegram_api() as tg, running(runtime_for(tg, workdir, nats_access), run):
        tg.block_chat(SLOW)
        await say(bus, SLOW, "ans_b1", "are you there?")
        await say(bus, SLOW, "ans_b2", "hello?")
        await say(bus, FAST, "ans_f1", "fine here")
        await tg.next_sent(FAST)

        async def both_dropped() -> dict[str, int] | None:
            answer = await bus.nc.request(subjects.counters("delivery"), b"", timeout=2)
            found = msgspec.json.decode(answer.data, type=dict[str, int])
            return found if found.get("delivery_dropped") == 2 else None  # refused, and the next

        counted = await eventually_async(both_dropped, what="both answers dropped")
    assert sent_to(tg, SLOW) == 1  # one try: the second was not sent at all
    assert counted.get("delivery_failed", 0) == 0  # no failure notice to a chat that blocked us
    assert tg.transcript(SLOW) == []


def sent_to(tg: TelegramAPIServer, chat_id: int) -> int:
    return sum(
        1 for c in tg.calls if c.method == "sendMessage" and c.params.get("chat_id") == chat_id
    )


async def test_a_standby_delivery_takes_over_when_the_active_one_stops(bus, workdir, nats_access):
    async with telegram_api() as tg:
        runtime = runtime_for(tg, workdir, nats_access)
        first_stop, second_stop = asyncio.Event(), asyncio.Event()
        first = asyncio.create_task(run(runtime, first_stop))
        await say(bus, FAST, "ans_1", "from the first")
        await tg.next_sent(FAST)
        second = asyncio.create_task(run(runtime, second_stop))  # stands by
        await say(bus, FAST, "ans_2", "still the first")
        await tg.next_sent(FAST)
        first_stop.set()  # lets the lease go: the standby takes over at once
        await first
        await say(bus, FAST, "ans_3", "from the standby")
        sent = await tg.next_sent(FAST, timeout_s=5)
        second_stop.set()
        await second
    assert sent.text == "from the standby"
    assert tg.transcript(FAST) == ["from the first", "still the first", "from the standby"]


async def test_a_standby_takes_over_within_the_ttl_of_a_dead_instances_lease(
    bus, workdir, nats_access
):
    loop = asyncio.get_running_loop()
    async with telegram_api() as tg:
        kv = await bus.js.key_value(subjects.LEASE_BUCKET)
        dead = leases.Owner(owner_id="another-host/delivery/0", pid=2**22 + 1)
        key = subjects.leader_key("delivery", str(tg.bot_id))
        assert await leases.acquire(kv, key, dead) is not None  # held, never renewed
        died_at = loop.time()
        async with running(runtime_for(tg, workdir, nats_access), run):
            await say(bus, FAST, "ans_d", "after the lease expired")
            sent = await tg.next_sent(FAST, timeout_s=leases.TTL_S + 5)
            took_over_s = loop.time() - died_at
    assert sent.text == "after the lease expired"
    assert leases.TTL_S - 1 <= took_over_s <= leases.TTL_S + 1  # it waited, then took over


async def test_a_10000_character_answer_with_code_arrives_split_with_folded_code(
    bus, workdir, nats_access
):
    code = "\n".join(f"    result_{n} = compute({n})  # step {n}" for n in range(40))
    section = f"Here is the next part of the plan, with **details**.\n\n```python\n{code}\n```\n\n"
    answer = section * 7
    assert len(answer) > 10_000
    async with telegram_api() as tg, running(runtime_for(tg, workdir, nats_access), run):
        await say(bus, FAST, "ans_long", answer)
        await eventually(lambda: len(tg.transcript(FAST)) >= 3, timeout_s=10)
        await eventually(lambda: settled_now(tg), timeout_s=10)
    parts = [sent for sent in tg.sent if sent.chat_id == FAST]
    kinds = {entity.type for part in parts for entity in part.entities}
    assert len(parts) >= 3
    assert all(part.entities for part in parts)  # none fell back to plain text
    assert {"pre", "expandable_blockquote", "bold"} <= kinds
    assert "".join(part.text for part in parts).count("result_39 = compute(39)") == 7


def settled_now(tg: TelegramAPIServer) -> bool:
    """Has the answer's last part arrived (it ends with the last section's code)?"""
    sent = tg.transcript(FAST)
    return bool(sent) and "result_39 = compute(39)" in sent[-1]
