"""Albums (SPEC §12.8): a SendFile carrying the photos of one tool call goes as one
sendMediaGroup, with a real nats-server and the test kit's Bot API server over real multipart;
when its files cannot all go as photos, each goes on its own.

Outputs are handled one at a time in order, so once a later output has reached Telegram, every
earlier one has been handled.
"""

import msgspec

from services.delivery import file_sender
from services.delivery.records import DeliveryRecord
from shared import subjects
from shared.ids import OutId, TurnId
from shared.messages.contract import Attachment, Chat
from shared.messages.outbound import SendFile
from shared.messages.tools import FileToSend
from tests.integration.test_delivery import CHAT_ID, CONV, OUT, PRIVATE, record_of, reply
from tests.integration.test_delivery_files import running_delivery
from tests.kit.attachments import png, stored
from tests.kit.telegram_api import telegram_api
from tests.kit.waiting import eventually

RED, GREEN, BLUE = png(64, 48), png(48, 64), png(32, 32)


def album(
    out_id: str, first: Attachment, caption: str, *more: FileToSend, chat: Chat = PRIVATE
) -> SendFile:
    return SendFile(
        chat=chat,
        out_id=OutId(out_id),
        file=first,
        caption=caption,
        turn_id=TurnId("t1"),
        more=list(more),
    )


def numbers(*parts: str) -> list[str]:
    """The numbered lines (`Red 03`) of message texts, in order."""
    return [line.split(":")[0] for part in parts for line in part.split("\n") if line]


async def three_photos(bus) -> tuple[Attachment, Attachment, Attachment]:
    return (
        await stored(bus, CONV, "red.png", RED, "image/png"),
        await stored(bus, CONV, "green.png", GREEN, "image/png"),
        await stored(bus, CONV, "blue.png", BLUE, "image/png"),
    )


async def test_three_photos_go_as_one_album_with_their_captions(bus, workdir, nats_access):
    red, green, blue = await three_photos(bus)
    output = album(
        "fil_t1_c1_0",
        red,
        "The **red** one",
        FileToSend(attachment=green),
        FileToSend(attachment=blue, caption="and _blue_", send_as="photo"),
    )
    async with telegram_api() as tg, running_delivery(tg, workdir, nats_access):
        await bus.publish(OUT, output, msg_id="fil_t1_c1_0")
        sent = [await tg.next_file() for _ in range(3)]
    assert [s.method for s in sent] == ["sendMediaGroup"] * 3
    assert [(s.kind, s.chat_id, s.file_name, s.data) for s in sent] == [
        ("photo", CHAT_ID, "red.png", RED),
        ("photo", CHAT_ID, "green.png", GREEN),
        ("photo", CHAT_ID, "blue.png", BLUE),
    ]
    assert sent[0].media_group is not None
    assert {s.media_group for s in sent} == {sent[0].media_group}
    assert [s.caption for s in sent] == ["The red one", "", "and blue"]
    assert [[(e.type, e.offset, e.length) for e in s.caption_entities] for s in sent] == [
        [("bold", 4, 3)],
        [],
        [("italic", 4, 4)],
    ]
    [call] = tg.calls
    assert call.method == "sendMediaGroup"
    assert call.params["media"] == [
        {
            "type": "photo",
            "media": "attach://f0",
            "caption": "The red one",
            "caption_entities": [{"type": "bold", "offset": 4, "length": 3}],
        },
        {"type": "photo", "media": "attach://f1"},  # no caption: none on the wire
        {
            "type": "photo",
            "media": "attach://f2",
            "caption": "and blue",
            "caption_entities": [{"type": "italic", "offset": 4, "length": 4}],
        },
    ]
    assert "parse_mode" not in call.params
    assert await record_of(bus, "fil_t1_c1_0") == DeliveryRecord(
        message_ids=tuple(s.message_id for s in sent), is_complete=True
    )


async def test_an_album_in_a_topic_goes_to_its_thread(bus, workdir, nats_access):
    topic = Chat(conversation_id=CONV, channel="telegram", kind="topic", chat_id=-1001, thread_id=7)
    red, green, _ = await three_photos(bus)
    output = album("fil_a", red, "", FileToSend(attachment=green), chat=topic)
    async with telegram_api() as tg, running_delivery(tg, workdir, nats_access):
        await bus.publish(OUT, output, msg_id="fil_a")
        sent = [await tg.next_file() for _ in range(2)]
    assert [(s.method, s.chat_id, s.message_thread_id) for s in sent] == [
        ("sendMediaGroup", -1001, 7)
    ] * 2


async def test_a_redelivered_album_sends_nothing_more(bus, workdir, nats_access):
    red, green, blue = await three_photos(bus)
    output = album(
        "fil_t1_c1_0", red, "", FileToSend(attachment=green), FileToSend(attachment=blue)
    )
    async with telegram_api() as tg, running_delivery(tg, workdir, nats_access):
        await bus.publish(OUT, output, msg_id="fil_t1_c1_0")
        await tg.next_file()
        await bus.publish(OUT, output, msg_id="fil_t1_c1_0-again")  # not deduped by the stream
        await bus.publish(OUT, reply("ans_t1", "done"), msg_id="ans_t1")
        await tg.next_sent(CHAT_ID)  # outputs go in order: the second copy was handled before
    assert len(tg.files) == 3
    assert [c.method for c in tg.calls] == ["sendMediaGroup", "sendMessage"]


async def test_an_album_recorded_before_a_crash_is_not_repeated(bus, workdir, nats_access):
    red, green, _ = await three_photos(bus)
    kv = await bus.js.key_value(subjects.DELIVERY_BUCKET)
    sent_before = DeliveryRecord(message_ids=(901, 902))  # sent, then the process died
    await kv.put(subjects.delivery_key(CONV, "fil_a"), msgspec.json.encode(sent_before))
    async with telegram_api() as tg, running_delivery(tg, workdir, nats_access):
        await bus.publish(
            OUT, album("fil_a", red, "", FileToSend(attachment=green)), msg_id="fil_a"
        )
        await bus.publish(OUT, reply("ans_t1", "done"), msg_id="ans_t1")
        await tg.next_sent(CHAT_ID)
    assert tg.files == []
    assert await record_of(bus, "fil_a") == DeliveryRecord(message_ids=(901, 902), is_complete=True)


async def test_a_file_too_big_for_a_photo_sends_each_on_its_own(bus, workdir, nats_access):
    red, _, blue = await three_photos(bus)
    heavy = png(16, 16) + b"\x00" * file_sender.MAX_PHOTO_BYTES  # PNG readers stop at IEND
    poster = await stored(bus, CONV, "poster.png", heavy, "image/png")
    output = album(
        "fil_a",
        red,
        "red",
        FileToSend(attachment=poster, caption="the poster"),
        FileToSend(attachment=blue, caption="blue"),
    )
    async with telegram_api() as tg, running_delivery(tg, workdir, nats_access):
        await bus.publish(OUT, output, msg_id="fil_a")
        sent = [await tg.next_file(timeout_s=10) for _ in range(3)]
    assert [(s.method, s.file_name, s.caption) for s in sent] == [
        ("sendPhoto", "red.png", "red"),
        ("sendDocument", "poster.png", "the poster"),
        ("sendPhoto", "blue.png", "blue"),
    ]
    assert {s.media_group for s in sent} == {None}
    assert "sendMediaGroup" not in [c.method for c in tg.calls]
    assert await record_of(bus, "fil_a") == DeliveryRecord(
        message_ids=tuple(s.message_id for s in sent), is_complete=True
    )


async def test_a_missing_photo_is_told_and_the_others_still_go(bus, workdir, nats_access):
    red, _, blue = await three_photos(bus)
    gone = Attachment(
        object_name=subjects.file_key(CONV, "gone.png"),
        file_name="gone.png",
        media_type="image/png",
        size=10,
        path="generated/gone.png",
    )
    output = album("fil_a", red, "", FileToSend(attachment=gone), FileToSend(attachment=blue))
    async with telegram_api() as tg, running_delivery(tg, workdir, nats_access):
        await bus.publish(OUT, output, msg_id="fil_a")
        sent = [await tg.next_file() for _ in range(2)]
        notice = await tg.next_sent(CHAT_ID)
    assert [(s.method, s.file_name) for s in sent] == [
        ("sendPhoto", "red.png"),
        ("sendPhoto", "blue.png"),
    ]
    assert notice.text == "⚠️ I could not send gone.png (it is no longer stored)."
    assert [c.method for c in tg.calls] == ["sendPhoto", "sendMessage", "sendPhoto"]
    record = await record_of(bus, "fil_a")
    assert record.message_ids == (sent[0].message_id, notice.message_id, sent[1].message_id)


async def test_a_refused_album_goes_one_by_one(bus, workdir, nats_access):
    red, green, _ = await three_photos(bus)
    output = album("fil_a", red, "", FileToSend(attachment=green))
    async with telegram_api() as tg, running_delivery(tg, workdir, nats_access):
        tg.fail_next("sendMediaGroup", status=400, description="Bad Request: MEDIA_INVALID")
        await bus.publish(OUT, output, msg_id="fil_a")
        sent = [await tg.next_file() for _ in range(2)]
    assert [(s.method, s.file_name) for s in sent] == [
        ("sendPhoto", "red.png"),
        ("sendPhoto", "green.png"),
    ]
    assert [c.method for c in tg.calls] == ["sendMediaGroup", "sendPhoto", "sendPhoto"]


async def test_refused_album_captions_are_resent_as_plain_text(bus, workdir, nats_access):
    red, green, _ = await three_photos(bus)
    output = album("fil_a", red, "A **red** one", FileToSend(attachment=green, caption="_g_"))
    async with telegram_api() as tg, running_delivery(tg, workdir, nats_access):
        tg.fail_next("sendMediaGroup", status=400, description="Bad Request: can't parse entities")
        await bus.publish(OUT, output, msg_id="fil_a")
        sent = [await tg.next_file() for _ in range(2)]
    assert [(s.method, s.caption, s.caption_entities) for s in sent] == [
        ("sendMediaGroup", "A red one", ()),
        ("sendMediaGroup", "g", ()),
    ]


async def test_the_rest_of_long_captions_follows_the_album(bus, workdir, nats_access):
    red, green, _ = await three_photos(bus)
    first = "\n\n".join(f"Red {n:02d}: " + "word " * 30 for n in range(8))
    second = "\n\n".join(f"Green {n:02d}: " + "word " * 30 for n in range(8))
    output = album("fil_a", red, first, FileToSend(attachment=green, caption=second))
    async with telegram_api() as tg, running_delivery(tg, workdir, nats_access):
        await bus.publish(OUT, output, msg_id="fil_a")
        sent = [await tg.next_file() for _ in range(2)]
        await eventually(lambda: "Green 07" in "".join(tg.transcript(CHAT_ID)))
    red_lines = [f"Red {n:02d}" for n in range(8)]
    green_lines = [f"Green {n:02d}" for n in range(8)]
    on_red, on_green = numbers(sent[0].caption), numbers(sent[1].caption)
    assert 0 < len(on_red) < 8
    assert 0 < len(on_green) < 8
    assert (on_red, on_green) == (red_lines[: len(on_red)], green_lines[: len(on_green)])
    follow = red_lines[len(on_red) :] + green_lines[len(on_green) :]
    assert numbers(*tg.transcript(CHAT_ID)) == follow  # after the album, in its order
    record = await record_of(bus, "fil_a")
    assert record.message_ids == (*(s.message_id for s in sent), *(m.message_id for m in tg.sent))
    assert record.is_complete
