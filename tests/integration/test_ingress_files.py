"""Files users send, fetched by the ingress into sc_files: a real nats-server, a real aiogram Bot,
and the kit's Bot API server."""

import logging
from collections.abc import AsyncIterator

import pytest
from aiogram import Bot
from aiogram.types import Message
from nats.js.errors import NotFoundError
from nats.js.object_store import ObjectStore

from services.ingress_telegram import files
from services.ingress_telegram.service import make_bot
from shared import subjects
from shared.config import TelegramConfig
from shared.errors import TransientError
from tests.kit.attachments import png
from tests.kit.nats import TestBus, connect_as
from tests.kit.telegram_files import MB

ADA = 42
CONV = "tg_42"


@pytest.fixture
async def bot(telegram) -> AsyncIterator[Bot]:
    bot = make_bot(TelegramConfig(bot_token=telegram.token, api_base=telegram.base_url))
    try:
        yield bot
    finally:
        await bot.session.close()


@pytest.fixture
async def store(bus, nats_access) -> AsyncIterator[ObjectStore]:
    """The file store as the ingress sees it: logged in as ingress_telegram, with its rights."""
    nc = await connect_as(nats_access, "ingress_telegram")
    try:
        yield await nc.jetstream().object_store(subjects.FILES_STORE)
    finally:
        await nc.close()


async def next_message(bot: Bot) -> tuple[int, Message]:
    [update] = await bot.get_updates(timeout=0)
    assert update.message is not None
    await bot.get_updates(offset=update.update_id + 1, timeout=0)
    return update.update_id, update.message


async def stored_names(bus: TestBus) -> list[str]:
    try:
        found = await (await bus.js.object_store(subjects.FILES_STORE)).list(ignore_deletes=True)
    except NotFoundError:  # nats-py's word for an empty store
        return []
    return sorted(info.name for info in found)


async def object_bytes(bus: TestBus, name: str) -> bytes:
    return (await (await bus.js.object_store(subjects.FILES_STORE)).get(name)).data or b""


async def test_a_document_lands_in_sc_files_as_sent(bot, telegram, store, bus):
    data = b"%PDF-1.7\n" + bytes(range(256)) * 40
    telegram.user_sends_file(
        ADA, "document", data, file_name="Q1 report.pdf", mime_type="application/pdf"
    )
    update_id, message = await next_message(bot)
    attachment = await files.fetch(bot, store, CONV, update_id, message)
    assert attachment is not None
    assert attachment.object_name == f"{CONV}/{update_id}-Q1_report.pdf"
    assert (attachment.file_name, attachment.media_type, attachment.size) == (
        "Q1 report.pdf",
        "application/pdf",
        len(data),
    )
    assert attachment.path == f"upload/{message.date:%Y%m%d-%H%M%S}-Q1_report.pdf"
    assert attachment.error == ""
    assert await object_bytes(bus, attachment.object_name) == data
    assert telegram.downloads(update_id) == 1


async def test_a_photos_largest_size_is_the_one_fetched(bot, telegram, store, bus):
    photo = png(1200, 900, is_noise=True)
    telegram.user_sends_file(ADA, "photo", photo, caption="the whiteboard")
    update_id, message = await next_message(bot)
    attachment = await files.fetch(bot, store, CONV, update_id, message)
    assert attachment is not None
    assert message.photo is not None
    largest = message.photo[-1]
    assert attachment.file_name == f"photo_{largest.file_unique_id}.jpg"
    assert attachment.media_type == "image/jpeg"
    assert await object_bytes(bus, attachment.object_name) == photo
    assert telegram.downloads(update_id) == 1  # no smaller size was fetched


async def test_a_file_over_20_mb_is_not_downloaded_and_gets_the_notice(bot, telegram, store, bus):
    telegram.user_sends_file(ADA, "video", b"frames", file_name="talk.mp4", declared_size=25 * MB)
    update_id, message = await next_message(bot)
    attachment = await files.fetch(bot, store, CONV, update_id, message)
    assert attachment is not None
    assert attachment.object_name == ""
    assert attachment.size == 25 * MB
    assert (
        attachment.error == "file too big: 25.0 MB; Telegram lets bots download files up to 20 MB"
    )
    assert files.is_too_big(attachment)
    assert files.too_big_notice(attachment) == (
        "⚠️ talk.mp4 is 25.0 MB; Telegram lets bots download files up to 20 MB. "
        "Send a smaller file or a link."
    )
    assert not [call for call in telegram.calls if call.method in {"getFile", "download"}]
    assert await stored_names(bus) == []


async def test_telegrams_own_too_big_refusal_is_a_too_big_file(bot, telegram, store):
    telegram.user_sends_file(ADA, "document", b"big", file_name="dump.bin")
    update_id, message = await next_message(bot)
    telegram.fail_next("getFile", status=400, description="Bad Request: file is too big")
    attachment = await files.fetch(bot, store, CONV, update_id, message)
    assert attachment is not None
    assert files.is_too_big(attachment)
    assert attachment.object_name == ""
    assert telegram.downloads(update_id) == 0


async def test_a_permanent_refusal_is_an_attachment_with_the_reason(bot, telegram, store, bus):
    lost = {"file_id": "gone", "file_unique_id": "g1", "file_size": 10, "file_name": "a.txt"}
    update_id = telegram.user_sends(ADA, {"document": lost})
    _, message = await next_message(bot)
    attachment = await files.fetch(bot, store, CONV, update_id, message)
    assert attachment is not None
    assert attachment.object_name == ""
    assert attachment.error == "the Bot API refused getFile: Bad Request: invalid file_id"
    assert not files.is_too_big(attachment)
    assert await stored_names(bus) == []


@pytest.mark.parametrize(
    "case",  # the failing call, its status, and the wait it asks for
    [("getFile", 429, 7), ("getFile", 502, 1.0), ("download", 503, 1.0)],
)
async def test_a_failure_that_may_pass_raises_transient_without_the_token(
    bot, telegram, store, caplog, case
):
    method, status, retry_after_s = case
    caplog.set_level(logging.DEBUG)
    telegram.user_sends_file(ADA, "voice", b"OggS voice")
    update_id, message = await next_message(bot)
    telegram.fail_next(method, status=status, retry_after=7 if status == 429 else None)
    with pytest.raises(TransientError) as failed:
        await files.fetch(bot, store, CONV, update_id, message)
    assert failed.value.retry_after_s == retry_after_s
    assert telegram.token not in str(failed.value)
    assert all(telegram.token not in record.getMessage() for record in caplog.records)
    attachment = await files.fetch(bot, store, CONV, update_id, message)  # the retry works
    assert attachment is not None
    assert (attachment.size, attachment.error) == (len(b"OggS voice"), "")
    assert telegram.downloads(update_id) == 1  # a refused call serves nothing


async def test_a_redo_overwrites_the_same_object(bot, telegram, store, bus):
    telegram.user_sends_file(ADA, "audio", b"ID3 tune" * 1000, file_name="tune.mp3")
    update_id, message = await next_message(bot)
    first = await files.fetch(bot, store, CONV, update_id, message)
    held = (await bus.js.stream_info(f"OBJ_{subjects.FILES_STORE}")).state.messages
    again = await files.fetch(bot, store, CONV, update_id, message)
    assert first == again
    assert (await bus.js.stream_info(f"OBJ_{subjects.FILES_STORE}")).state.messages == held
    assert first is not None
    assert await stored_names(bus) == [first.object_name]
    assert await object_bytes(bus, first.object_name) == b"ID3 tune" * 1000
    assert telegram.downloads(update_id) == 2


async def test_a_message_without_a_file_fetches_nothing(bot, telegram, store):
    update_id = telegram.user_says(ADA, "just text")
    _, message = await next_message(bot)
    assert await files.fetch(bot, store, CONV, update_id, message) is None
    assert telegram.calls[-1].method == "getUpdates"
