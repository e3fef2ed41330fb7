"""The delivery service with a real nats-server and the test kit's Telegram Bot API server.

Outputs are handled one at a time in order, so once a later output has reached Telegram, every
earlier one has been handled; leaving `running` waits for the output in hand to finish.
"""

import logging
from pathlib import Path

import msgspec

from services.delivery.records import DeliveryRecord
from services.delivery.service import run
from shared import subjects
from shared.bus import BusAccess
from shared.ids import ConversationId, OutId, TurnId
from shared.lifecycle import Runtime
from shared.messages.contract import Chat
from shared.messages.outbound import SendReply, SetReaction, ShowTyping
from tests.kit.services import make_runtime, running
from tests.kit.telegram_api import TelegramAPIServer, telegram_api
from tests.kit.waiting import eventually

CHAT_ID = 4242
CONV = ConversationId(f"tg_{CHAT_ID}")
PRIVATE = Chat(conversation_id=CONV, channel="telegram", kind="private", chat_id=CHAT_ID)
OUT = subjects.outbound("telegram", CONV)
MODELS = {"default_model": "m", "models": {"m": {"provider": "openai_chat", "model": "x"}}}


def runtime_for(tg: TelegramAPIServer, workdir: Path, nats_access: BusAccess) -> Runtime:
    telegram = {"bot_token": tg.token, "api_base": tg.base_url, "allowed_user_ids": [1]}
    return make_runtime({**MODELS, "telegram": telegram}, workdir, nats_access)


def reply(out_id: str, text: str, *, turn_id: str | None = None, chat: Chat = PRIVATE):
    turn = TurnId(turn_id) if turn_id else None
    return SendReply(chat=chat, out_id=OutId(out_id), text=text, turn_id=turn)


def eyes(input_seq: int, message_id: int) -> SetReaction:
    out_id = subjects.reaction_out_id(input_seq)
    return SetReaction(chat=PRIVATE, out_id=out_id, message_id=message_id, emoji="👀")


def numbered_answer(paragraphs: int) -> str:
    """A long Markdown answer whose paragraphs say their number, so order shows in the output."""
    return "\n\n".join(
        f"Paragraph {n:03d}: **bold** and " + "words " * 40 for n in range(paragraphs)
    )


async def record_of(bus, out_id: str) -> DeliveryRecord:
    kv = await bus.js.key_value(subjects.DELIVERY_BUCKET)
    entry = await kv.get(subjects.delivery_key(CONV, out_id))
    assert entry.value is not None
    return msgspec.json.decode(entry.value, type=DeliveryRecord)


async def counters(bus) -> dict[str, int]:
    answer = await bus.nc.request(subjects.counters("delivery"), b"", timeout=2)
    return msgspec.json.decode(answer.data, type=dict[str, int])


async def test_an_answer_is_sent_with_entities_and_recorded(bus, workdir, nats_access):
    async with telegram_api() as tg, running(runtime_for(tg, workdir, nats_access), run):
        await bus.publish(OUT, reply("ans_t1", "Hello **world**, run `ls`."), msg_id="ans_t1")
        sent = await tg.next_sent(CHAT_ID)
    assert sent.text == "Hello world, run ls."
    assert [(e.type, e.offset, e.length) for e in sent.entities] == [
        ("bold", 6, 5),
        ("code", 17, 2),
    ]
    [call] = [c for c in tg.calls if c.method == "sendMessage"]
    assert call.params["link_preview_options"] == {"is_disabled": True}
    assert "parse_mode" not in call.params
    assert await record_of(bus, "ans_t1") == DeliveryRecord(
        message_ids=(sent.message_id,), is_complete=True, is_attempted=True
    )


async def test_an_answer_attempted_before_is_logged_as_the_at_least_once_window(
    bus, workdir, nats_access, caplog
):
    """A bus that lost its delivery count in a crash redelivers as if for the first time; the
    record's mark, stored before the first send, still tells that a send may have reached the
    chat unrecorded (DESIGN §1)."""
    caplog.set_level(logging.WARNING, logger="services.delivery.telegram_sender")
    kv = await bus.js.key_value(subjects.DELIVERY_BUCKET)
    marked = DeliveryRecord(is_attempted=True)
    await kv.put(subjects.delivery_key(CONV, "ans_t9"), msgspec.json.encode(marked))
    async with telegram_api() as tg, running(runtime_for(tg, workdir, nats_access), run):
        await bus.publish(OUT, reply("ans_t9", "maybe twice"), msg_id="ans_t9")
        await tg.next_sent(CHAT_ID)
    [window] = [r.getMessage() for r in caplog.records if "delivered again" in r.getMessage()]
    assert window.startswith(f"output ans_t9 of {CONV} delivered again (try 1)")
    assert (await record_of(bus, "ans_t9")).is_complete


async def test_a_topic_answer_goes_to_its_thread(bus, workdir, nats_access):
    topic = Chat(conversation_id=CONV, channel="telegram", kind="topic", chat_id=-1001, thread_id=7)
    async with telegram_api() as tg, running(runtime_for(tg, workdir, nats_access), run):
        await bus.publish(OUT, reply("ans_t1", "in the topic", chat=topic), msg_id="ans_t1")
        sent = await tg.next_sent(-1001)
    assert (sent.text, sent.message_thread_id) == ("in the topic", 7)


async def test_the_same_output_published_again_is_not_sent_twice(bus, workdir, nats_access):
    async with telegram_api() as tg, running(runtime_for(tg, workdir, nats_access), run):
        await bus.publish(OUT, reply("ans_t1", "once"), msg_id="ans_t1")
        await tg.next_sent(CHAT_ID)
        await bus.publish(OUT, reply("ans_t1", "once"), msg_id="ans_t1-again")  # not deduped
        await bus.publish(OUT, reply("ans_t2", "next"), msg_id="ans_t2")
        await tg.next_sent(CHAT_ID)
    assert tg.transcript(CHAT_ID) == ["once", "next"]


async def test_a_429_is_waited_out_and_the_answer_arrives_once(bus, workdir, nats_access):
    async with telegram_api() as tg, running(runtime_for(tg, workdir, nats_access), run):
        tg.fail_next("sendMessage", status=429, retry_after=1)
        await bus.publish(OUT, reply("ans_t1", "after the flood"), msg_id="ans_t1")
        await tg.next_sent(CHAT_ID)
        await bus.publish(OUT, reply("ans_t2", "next"), msg_id="ans_t2")
        await tg.next_sent(CHAT_ID)
    assert tg.transcript(CHAT_ID) == ["after the flood", "next"]
    refused, accepted = [c.at_s for c in tg.calls if c.method == "sendMessage"][:2]
    assert 0.99 <= accepted - refused < 3.0


async def test_a_server_error_is_retried_later(bus, workdir, nats_access):
    async with telegram_api() as tg, running(runtime_for(tg, workdir, nats_access), run):
        tg.fail_next("sendMessage", status=502)
        await bus.publish(OUT, reply("ans_t1", "eventually"), msg_id="ans_t1")
        await tg.next_sent(CHAT_ID)
    assert tg.transcript(CHAT_ID) == ["eventually"]
    assert [c.method for c in tg.calls] == ["sendMessage", "sendMessage"]


async def test_a_long_answer_arrives_as_ordered_parts(bus, workdir, nats_access):
    answer = numbered_answer(40)
    assert len(answer) > 10_000
    async with telegram_api() as tg, running(runtime_for(tg, workdir, nats_access), run):
        await bus.publish(OUT, reply("ans_t1", answer), msg_id="ans_t1")
        await eventually(lambda: "Paragraph 039" in "".join(tg.transcript(CHAT_ID)))
    parts = tg.transcript(CHAT_ID)
    assert len(parts) >= 3
    numbers = [line.split(":")[0] for part in parts for line in part.split("\n") if line]
    assert numbers == [f"Paragraph {n:03d}" for n in range(40)]
    assert all(any(e.type == "bold" for e in sent.entities) for sent in tg.sent)
    assert len((await record_of(bus, "ans_t1")).message_ids) == len(parts)


async def test_a_redelivered_answer_resumes_after_the_last_part_sent(bus, workdir, nats_access):
    answer = numbered_answer(40)
    kv = await bus.js.key_value(subjects.DELIVERY_BUCKET)
    sent_before = DeliveryRecord(message_ids=(901,))  # part 1 reached Telegram, then a crash
    await kv.put(subjects.delivery_key(CONV, "ans_t1"), msgspec.json.encode(sent_before))
    async with telegram_api() as tg, running(runtime_for(tg, workdir, nats_access), run):
        await bus.publish(OUT, reply("ans_t1", answer), msg_id="ans_t1")
        await eventually(lambda: "Paragraph 039" in "".join(tg.transcript(CHAT_ID)))
    assert "Paragraph 000" not in "".join(tg.transcript(CHAT_ID))
    record = await record_of(bus, "ans_t1")
    assert record.is_complete
    assert record.message_ids == (901, *(sent.message_id for sent in tg.sent))


async def test_refused_entities_are_resent_as_plain_text(bus, workdir, nats_access):
    async with telegram_api() as tg, running(runtime_for(tg, workdir, nats_access), run):
        tg.fail_next("sendMessage", status=400, description="Bad Request: can't parse entities")
        await bus.publish(OUT, reply("ans_t1", "Hello **world**"), msg_id="ans_t1")
        sent = await tg.next_sent(CHAT_ID)
    assert (sent.text, sent.entities) == ("Hello world", ())


async def test_a_permanent_refusal_is_told_to_the_user_and_counted(bus, workdir, nats_access):
    async with telegram_api() as tg, running(runtime_for(tg, workdir, nats_access), run):
        tg.fail_next("sendMessage", status=400, description="Bad Request: message thread not found")
        await bus.publish(OUT, reply("ans_t1", "**lost**"), msg_id="ans_t1")
        sent = await tg.next_sent(CHAT_ID)
        assert (await counters(bus)).get("delivery_failed") == 1
    assert sent.text == "⚠️ I could not deliver the answer (Bad Request: message thread not found)."
    assert sent.entities == ()
    assert (await record_of(bus, "ans_t1")).is_complete


async def test_typing_shows_while_the_turn_runs_and_stops_with_its_answer(
    bus, workdir, nats_access
):
    typing = ShowTyping(chat=PRIVATE, out_id=OutId("typ_t9"), turn_id=TurnId("t9"))
    async with telegram_api() as tg, running(runtime_for(tg, workdir, nats_access), run):
        await bus.publish(OUT, typing, msg_id="typ_t9")
        await eventually(lambda: tg.actions(CHAT_ID))
        await bus.publish(OUT, reply("ans_t9", "done", turn_id="t9"), msg_id="ans_t9")
        await tg.next_sent(CHAT_ID)
    assert tg.actions(CHAT_ID)[0] == "typing"
    methods = [c.method for c in tg.calls]
    assert methods[0] == "sendChatAction"
    assert "sendChatAction" not in methods[methods.index("sendMessage") :]


async def test_a_reaction_is_set_once_even_when_published_twice(bus, workdir, nats_access):
    reaction = eyes(7, message_id=55)
    async with telegram_api() as tg, running(runtime_for(tg, workdir, nats_access), run):
        await bus.publish(OUT, reaction, msg_id=reaction.out_id)
        await bus.publish(OUT, reaction, msg_id=f"{reaction.out_id}-again")  # not deduped
        await bus.publish(OUT, reply("ans_t1", "next"), msg_id="ans_t1")
        await tg.next_sent(CHAT_ID)  # outputs go in order: both reactions were handled before
    assert tg.reactions(CHAT_ID) == [(55, "👀")]
    [call] = [c for c in tg.calls if c.method == "setMessageReaction"]
    assert call.params == {
        "chat_id": CHAT_ID,
        "message_id": 55,
        "reaction": [{"type": "emoji", "emoji": "👀"}],
    }
    assert await record_of(bus, reaction.out_id) == DeliveryRecord(is_complete=True)


async def test_a_429_on_a_reaction_is_waited_out(bus, workdir, nats_access):
    async with telegram_api() as tg, running(runtime_for(tg, workdir, nats_access), run):
        tg.fail_next("setMessageReaction", status=429, retry_after=1)
        await bus.publish(OUT, eyes(7, message_id=55), msg_id="rct_7")
        await eventually(lambda: tg.reactions(CHAT_ID))
    assert tg.reactions(CHAT_ID) == [(55, "👀")]
    refused, accepted = [c.at_s for c in tg.calls if c.method == "setMessageReaction"]
    assert 0.99 <= accepted - refused < 3.0


async def test_a_refused_reaction_is_acked_and_never_told_to_the_user(
    bus, workdir, nats_access, caplog
):
    caplog.set_level(logging.INFO, logger="services.delivery.telegram_sender")
    async with telegram_api() as tg, running(runtime_for(tg, workdir, nats_access), run):
        tg.fail_next("setMessageReaction", status=400, description="Bad Request: REACTION_INVALID")
        await bus.publish(OUT, eyes(7, message_id=55), msg_id="rct_7")
        await bus.publish(OUT, reply("ans_t1", "next"), msg_id="ans_t1")
        await tg.next_sent(CHAT_ID)
        seen = await counters(bus)
    assert tg.transcript(CHAT_ID) == ["next"]  # no failure notice
    assert tg.reactions(CHAT_ID) == []
    assert [c.method for c in tg.calls] == ["setMessageReaction", "sendMessage"]  # not retried
    assert seen.get("handled", 0) >= 1
    assert "bad_messages" not in seen
    assert "delivery_failed" not in seen
    [refusal] = [r for r in caplog.records if "REACTION_INVALID" in r.getMessage()]
    assert refusal.levelno == logging.INFO
    assert (await record_of(bus, "rct_7")).is_complete
    info = await bus.js.consumer_info(subjects.OUT_STREAM, subjects.durable("delivery", "telegram"))
    assert (info.num_ack_pending, info.num_redelivered) == (0, 0)


async def test_without_telegram_it_registers_and_consumes_nothing(
    bus, workdir, nats_access, caplog
):
    caplog.set_level(logging.INFO, logger="services.delivery.service")
    async with running(make_runtime(MODELS, workdir, nats_access), run):
        await eventually(lambda: "no [telegram] section" in caplog.text)  # logged after register
        ping = await bus.nc.request("$SRV.PING.delivery", b"", timeout=2)
        await bus.publish(OUT, reply("ans_t1", "for a bus client"), msg_id="ans_t1")
    assert msgspec.json.decode(ping.data)["name"] == "delivery"
    info = await bus.js.consumer_info(subjects.OUT_STREAM, subjects.durable("delivery", "telegram"))
    assert info.delivered.stream_seq == 0  # the output waits for a delivery with Telegram
    assert info.num_pending == 1
