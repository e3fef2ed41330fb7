"""Files out (SPEC §12.8): SendFile outputs uploaded by the delivery service, with a real
nats-server and the test kit's Telegram Bot API server over real HTTP multipart.

Outputs are handled one at a time in order, so once a later output has reached Telegram, every
earlier one has been handled.
"""

from contextlib import AbstractAsyncContextManager
from pathlib import Path

import msgspec

from services.delivery.records import DeliveryRecord
from services.delivery.service import run
from shared import subjects
from shared.bus import BusAccess
from shared.ids import OutId, TurnId
from shared.messages.contract import Attachment, Chat
from shared.messages.outbound import SendFile, ShowTyping
from shared.messages.tools import SendAs
from tests.integration.test_delivery import (
    CHAT_ID,
    CONV,
    OUT,
    PRIVATE,
    counters,
    record_of,
    reply,
    runtime_for,
)
from tests.kit.attachments import png, size_of, stored
from tests.kit.services import running
from tests.kit.telegram_api import TelegramAPIServer, telegram_api
from tests.kit.waiting import eventually

PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


def running_delivery(
    tg: TelegramAPIServer, workdir: Path, nats_access: BusAccess
) -> AbstractAsyncContextManager[None]:
    return running(runtime_for(tg, workdir, nats_access), run)


def offer(
    out_id: str,
    file: Attachment,
    caption: str = "",
    *,
    send_as: SendAs = "auto",
    chat: Chat = PRIVATE,
) -> SendFile:
    return SendFile(
        chat=chat,
        out_id=OutId(out_id),
        file=file,
        caption=caption,
        send_as=send_as,
        turn_id=TurnId("t1"),
    )


async def test_a_png_is_sent_as_a_photo_with_its_caption(bus, workdir, nats_access):
    image = png(64, 48)
    cat = await stored(bus, CONV, "cat.png", image, "image/png")
    async with telegram_api() as tg, running_delivery(tg, workdir, nats_access):
        await bus.publish(OUT, offer("fil_t1_c1_0", cat, "A **cat**"), msg_id="fil_t1_c1_0")
        sent = await tg.next_file()
    assert (sent.method, sent.chat_id) == ("sendPhoto", CHAT_ID)
    assert (sent.file_name, sent.content_type, sent.data) == ("cat.png", "image/png", image)
    assert (sent.width, sent.height) == size_of(image)
    assert sent.caption == "A cat"
    assert [(e.type, e.offset, e.length) for e in sent.caption_entities] == [("bold", 2, 3)]
    [call] = [c for c in tg.calls if c.method == "sendPhoto"]
    assert call.params["caption_entities"] == [{"type": "bold", "offset": 2, "length": 3}]
    assert "parse_mode" not in call.params
    assert "message_thread_id" not in call.params
    assert await record_of(bus, "fil_t1_c1_0") == DeliveryRecord(
        message_ids=(sent.message_id,), is_complete=True
    )


async def test_a_pdf_goes_to_the_topic_as_a_document(bus, workdir, nats_access):
    topic = Chat(conversation_id=CONV, channel="telegram", kind="topic", chat_id=-1001, thread_id=7)
    report = await stored(bus, CONV, "résumé.pdf", PDF, "application/pdf")
    async with telegram_api() as tg, running_delivery(tg, workdir, nats_access):
        await bus.publish(OUT, offer("fil_t1_c1_0", report, chat=topic), msg_id="fil_t1_c1_0")
        sent = await tg.next_file()
    assert (sent.method, sent.chat_id, sent.message_thread_id) == ("sendDocument", -1001, 7)
    assert (sent.file_name, sent.content_type, sent.data) == ("résumé.pdf", "application/pdf", PDF)
    assert (sent.caption, sent.caption_entities) == ("", ())
    [call] = [c for c in tg.calls if c.method == "sendDocument"]
    assert "caption" not in call.params


async def test_a_photo_past_telegrams_sides_goes_as_a_document(bus, workdir, nats_access):
    strip = await stored(bus, CONV, "strip.png", png(2100, 100), "image/png")  # 21:1
    async with telegram_api() as tg, running_delivery(tg, workdir, nats_access):
        await bus.publish(OUT, offer("fil_a", strip, send_as="photo"), msg_id="fil_a")
        sent = await tg.next_file()
    assert sent.method == "sendDocument"


async def test_an_explicit_send_as_wins_over_the_media_type(bus, workdir, nats_access):
    voice = await stored(bus, CONV, "note.ogg", b"OggS\x00fake opus", "audio/ogg")
    clip = await stored(bus, CONV, "clip.mp4", b"\x00\x00\x00\x18ftypmp42", "video/mp4")
    async with telegram_api() as tg, running_delivery(tg, workdir, nats_access):
        await bus.publish(OUT, offer("fil_a", voice, send_as="voice"), msg_id="fil_a")
        await bus.publish(OUT, offer("fil_b", clip), msg_id="fil_b")
        await bus.publish(OUT, offer("fil_c", clip, send_as="document"), msg_id="fil_c")
        sent = [await tg.next_file() for _ in range(3)]
    assert [s.method for s in sent] == ["sendVoice", "sendVideo", "sendDocument"]


async def test_a_file_is_sent_once_even_when_its_output_comes_twice(bus, workdir, nats_access):
    report = await stored(bus, CONV, "report.pdf", PDF, "application/pdf")
    file = offer("fil_t1_c1_0", report, "the report")
    async with telegram_api() as tg, running_delivery(tg, workdir, nats_access):
        await bus.publish(OUT, file, msg_id="fil_t1_c1_0")
        await tg.next_file()
        await bus.publish(OUT, file, msg_id="fil_t1_c1_0-again")  # not deduped by the stream
        await bus.publish(OUT, reply("ans_t1", "done"), msg_id="ans_t1")
        await tg.next_sent(CHAT_ID)  # outputs go in order: the second copy was handled before
    assert len(tg.files) == 1
    assert [c.method for c in tg.calls] == ["sendDocument", "sendMessage"]


async def test_an_upload_recorded_before_a_crash_is_not_repeated(bus, workdir, nats_access):
    report = await stored(bus, CONV, "report.pdf", PDF, "application/pdf")
    kv = await bus.js.key_value(subjects.DELIVERY_BUCKET)
    sent_before = DeliveryRecord(message_ids=(901,))  # uploaded, then the process died
    await kv.put(subjects.delivery_key(CONV, "fil_t1_c1_0"), msgspec.json.encode(sent_before))
    async with telegram_api() as tg, running_delivery(tg, workdir, nats_access):
        await bus.publish(OUT, offer("fil_t1_c1_0", report), msg_id="fil_t1_c1_0")
        await bus.publish(OUT, reply("ans_t1", "done"), msg_id="ans_t1")
        await tg.next_sent(CHAT_ID)
    assert tg.files == []
    assert await record_of(bus, "fil_t1_c1_0") == DeliveryRecord(
        message_ids=(901,), is_complete=True
    )


async def test_a_refused_upload_is_told_to_the_user_and_counted(bus, workdir, nats_access):
    report = await stored(bus, CONV, "report.pdf", PDF, "application/pdf")
    async with telegram_api() as tg, running_delivery(tg, workdir, nats_access):
        tg.fail_next("sendDocument", status=400, description="Bad Request: FILE_PARTS_INVALID")
        await bus.publish(OUT, offer("fil_t1_c1_0", report), msg_id="fil_t1_c1_0")
        notice = await tg.next_sent(CHAT_ID)
        assert (await counters(bus)).get("delivery_failed") == 1
    assert notice.text == "⚠️ I could not send report.pdf (Bad Request: FILE_PARTS_INVALID)."
    assert tg.files == []
    assert [c.method for c in tg.calls] == ["sendDocument", "sendMessage"]  # not retried
    assert await record_of(bus, "fil_t1_c1_0") == DeliveryRecord(
        message_ids=(notice.message_id,), is_complete=True
    )


async def test_bytes_that_are_no_image_go_as_a_document(bus, workdir, nats_access):
    broken = await stored(bus, CONV, "broken.png", b"\x89PNG not really", "image/png")
    async with telegram_api() as tg, running_delivery(tg, workdir, nats_access):
        await bus.publish(OUT, offer("fil_a", broken, send_as="photo"), msg_id="fil_a")
        sent = await tg.next_file()
    assert sent.method == "sendDocument"  # as a photo, Telegram would refuse it


async def test_a_file_over_50_mb_is_not_attempted(bus, workdir, nats_access):
    huge = Attachment(
        object_name=subjects.file_key(CONV, "dump.tar"),
        file_name="dump.tar",
        media_type="application/x-tar",
        size=63 * 1024 * 1024,
        path="upload/dump.tar",
    )
    async with telegram_api() as tg, running_delivery(tg, workdir, nats_access):
        await bus.publish(OUT, offer("fil_t1_c1_0", huge), msg_id="fil_t1_c1_0")
        notice = await tg.next_sent(CHAT_ID)
    assert notice.text == "⚠️ dump.tar is 63 MB; Telegram bots can send files up to 50 MB."
    assert [c.method for c in tg.calls] == ["sendMessage"]


async def test_a_file_no_longer_stored_is_told_to_the_user(bus, workdir, nats_access):
    gone = Attachment(
        object_name=subjects.file_key(CONV, "gone.pdf"),
        file_name="gone.pdf",
        media_type="application/pdf",
        size=10,
        path="upload/gone.pdf",
    )
    async with telegram_api() as tg, running_delivery(tg, workdir, nats_access):
        await bus.publish(OUT, offer("fil_t1_c1_0", gone), msg_id="fil_t1_c1_0")
        notice = await tg.next_sent(CHAT_ID)
    assert notice.text == "⚠️ I could not send gone.pdf (it is no longer stored)."
    assert tg.files == []


async def test_refused_caption_entities_are_resent_as_plain_text(bus, workdir, nats_access):
    cat = await stored(bus, CONV, "cat.png", png(8, 8), "image/png")
    async with telegram_api() as tg, running_delivery(tg, workdir, nats_access):
        tg.fail_next("sendPhoto", status=400, description="Bad Request: can't parse entities")
        await bus.publish(OUT, offer("fil_a", cat, "A **cat**"), msg_id="fil_a")
        sent = await tg.next_file()
    assert (sent.caption, sent.caption_entities) == ("A cat", ())


async def test_a_long_caption_is_cut_and_the_rest_follows(bus, workdir, nats_access):
    caption = "\n\n".join(f"Line {n:02d}: **bold** " + "word " * 30 for n in range(12))
    cat = await stored(bus, CONV, "cat.png", png(8, 8), "image/png")
    async with telegram_api() as tg, running_delivery(tg, workdir, nats_access):
        await bus.publish(OUT, offer("fil_a", cat, caption), msg_id="fil_a")
        sent = await tg.next_file()
        await eventually(lambda: "Line 11" in "".join(tg.transcript(CHAT_ID)))
    assert len(sent.caption.encode("utf-16-le")) // 2 <= 1024
    assert sent.caption.startswith("Line 00: bold ")
    shown = [sent.caption, *tg.transcript(CHAT_ID)]
    numbers = [line.split(":")[0] for part in shown for line in part.split("\n") if line]
    assert numbers == [f"Line {n:02d}" for n in range(12)]
    record = await record_of(bus, "fil_a")
    assert record.message_ids == (sent.message_id, *(s.message_id for s in tg.sent))
    assert record.is_complete


async def test_a_file_does_not_end_the_turns_typing(bus, workdir, nats_access):
    typing = ShowTyping(chat=PRIVATE, out_id=OutId("typ_t1"), turn_id=TurnId("t1"))
    cat = await stored(bus, CONV, "cat.png", png(8, 8), "image/png")
    async with telegram_api() as tg, running_delivery(tg, workdir, nats_access):
        await bus.publish(OUT, typing, msg_id="typ_t1")
        await bus.publish(OUT, offer("fil_a", cat), msg_id="fil_a")
        await tg.next_file()
        # typing starts after its short delay: had the file ended it, none would ever come
        await eventually(lambda: tg.actions(CHAT_ID), what="typing after the file")
        await bus.publish(OUT, reply("ans_t1", "done", turn_id="t1"), msg_id="ans_t1")
        await tg.next_sent(CHAT_ID)
    methods = [c.method for c in tg.calls]
    assert methods.index("sendPhoto") < methods.index("sendChatAction")
    assert "sendChatAction" not in methods[methods.index("sendMessage") :]
