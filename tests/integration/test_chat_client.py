"""`stellaclaw chat`'s output side against a real nats-server: what it prints, what it waits for."""

import asyncio

from services.launcher.chat import Tally, reaction_line, show
from shared import subjects
from shared.connection import connected
from shared.ids import ConversationId, OutId
from shared.messages.contract import Chat
from shared.messages.outbound import SendReply, SetReaction
from tests.kit.waiting import eventually

CONV = ConversationId("cli_ada")
CHAT = Chat(conversation_id=CONV, channel="cli", kind="cli")
OUT = subjects.outbound("cli", CONV)


def test_a_reaction_reads_as_one_plain_line():
    eyes = SetReaction(chat=CHAT, out_id=subjects.reaction_out_id(3), message_id=0, emoji="👀")
    assert reaction_line(eyes) == "👀 (read; I'll take it in at the next step)"


async def test_a_reaction_is_shown_but_is_not_the_answer_owed(bus, nats_access, capsys):
    tally = Tally()
    tally.sent = 2  # a question and its follow-up
    eyes = SetReaction(chat=CHAT, out_id=subjects.reaction_out_id(2), message_id=0, emoji="👀")
    answer = SendReply(chat=CHAT, out_id=OutId("ans_t1"), text="The answer.")
    async with connected(nats_access, "chat") as conn:
        outputs = await conn.js.subscribe(
            OUT, stream=subjects.OUT_CLI_STREAM, ordered_consumer=True
        )
        printer = asyncio.create_task(show(conn, outputs, tally))
        try:
            await bus.publish(OUT, eyes, msg_id=eyes.out_id)
            await bus.publish(OUT, answer, msg_id=answer.out_id)
            await eventually(lambda: tally.replies)  # outputs are shown in order
        finally:
            printer.cancel()
            await outputs.unsubscribe()
    assert tally.replies == 1  # the follow-up's answer is still owed
    assert capsys.readouterr().out.splitlines() == [reaction_line(eyes), "The answer."]


async def test_an_answer_that_took_a_follow_up_in_pays_for_both(bus, nats_access):
    tally = Tally()
    tally.sent = 2  # a question and a follow-up the turn took in
    answer = SendReply(chat=CHAT, out_id=OutId("ans_t1"), text="Both done.", settles=2)
    async with connected(nats_access, "chat") as conn:
        outputs = await conn.js.subscribe(
            OUT, stream=subjects.OUT_CLI_STREAM, ordered_consumer=True
        )
        printer = asyncio.create_task(show(conn, outputs, tally))
        try:
            await bus.publish(OUT, answer, msg_id=answer.out_id)
            async with asyncio.timeout(5):
                await tally.owed()  # nothing more is owed
        finally:
            printer.cancel()
            await outputs.unsubscribe()
    assert tally.replies == 2
