"""The kit's Telegram server keeps what users send: getFile, the file URL, the 20 MB limit."""

import io

import aiohttp
import pytest
from aiogram import Bot
from aiogram.exceptions import TelegramBadRequest
from aiogram.types import Message

from tests.kit.attachments import png, size_of
from tests.kit.telegram_files import FILE_KINDS, MB

ADA = 42


async def received(bot: Bot) -> list[Message]:
    """The messages of every pending update, as aiogram decodes them."""
    found = [update.message for update in await bot.get_updates(timeout=0)]
    return [message for message in found if message is not None]


async def downloaded(bot: Bot, file_id: str) -> bytes:
    found = await bot.get_file(file_id)
    assert found.file_path is not None
    out = io.BytesIO()
    await bot.download_file(found.file_path, out)
    return out.getvalue()


async def test_a_document_round_trips_through_get_file_and_its_url(bot, telegram):
    update_id = telegram.user_sends_file(
        ADA, "document", b"%PDF-1.7 ...", file_name="report.pdf", mime_type="application/pdf"
    )
    [message] = await received(bot)
    document = message.document
    assert document is not None
    assert (document.file_name, document.mime_type, document.file_size) == (
        "report.pdf",
        "application/pdf",
        12,
    )
    described = await bot.get_file(document.file_id)
    assert (described.file_path or "").startswith("documents/file_")
    assert (described.file_path or "").endswith(".pdf")
    assert described.file_unique_id == document.file_unique_id
    assert await downloaded(bot, document.file_id) == b"%PDF-1.7 ..."
    assert telegram.downloads(update_id) == 1


async def test_a_photo_comes_in_sizes_and_the_largest_is_the_photo_sent(bot, telegram):
    photo = png(1000, 500)
    update_id = telegram.user_sends_file(ADA, "photo", photo, caption="look /here @ada_l")
    [message] = await received(bot)
    assert message.photo is not None
    sides = [(size.width, size.height) for size in message.photo]
    assert sides == [(90, 45), (320, 160), (800, 400), (1000, 500)]
    assert len({size.file_id for size in message.photo}) == 4
    assert await downloaded(bot, message.photo[-1].file_id) == photo
    small = await downloaded(bot, message.photo[0].file_id)
    assert size_of(small) == (90, 45)
    assert message.caption == "look /here @ada_l"
    assert [(e.type, e.offset, e.length) for e in message.caption_entities or ()] == [
        ("bot_command", 5, 5),
        ("mention", 11, 6),
    ]
    assert telegram.downloads(update_id) == 2  # any of its sizes counts


async def test_a_file_over_20_mb_is_refused_by_get_file_as_telegram_does(bot, telegram):
    telegram.user_sends_file(ADA, "video", b"frames", declared_size=25 * MB)
    [message] = await received(bot)
    assert message.video is not None
    assert message.video.file_size == 25 * MB
    with pytest.raises(TelegramBadRequest, match="file is too big"):
        await bot.get_file(message.video.file_id)
    with pytest.raises(TelegramBadRequest, match="invalid file_id"):
        await bot.get_file("no-such-file")


@pytest.mark.parametrize("kind", FILE_KINDS)
async def test_every_kind_carries_the_fields_telegram_requires(bot, telegram, kind):
    telegram.user_sends_file(ADA, kind, b"bytes of the file", media_group_id="album-1")
    [message] = await received(bot)  # aiogram refuses an update missing a required field
    assert message.media_group_id == "album-1"
    media = getattr(message, kind)
    assert media
    file_id = media[-1].file_id if kind == "photo" else media.file_id
    assert await downloaded(bot, file_id) == b"bytes of the file"


async def test_an_animation_also_comes_as_a_document_and_stickers_have_formats(bot, telegram):
    telegram.user_sends_file(ADA, "animation", b"gif", file_name="cat.gif.mp4")
    telegram.user_sends_file(ADA, "sticker", b"tgs", mime_type="application/x-tgsticker")
    telegram.user_sends_file(ADA, "sticker", b"webm", mime_type="video/webm")
    telegram.user_sends_file(ADA, "sticker", b"webp")
    animation, animated, video, static = await received(bot)
    assert animation.animation is not None
    assert animation.document is not None
    assert animation.document.file_id == animation.animation.file_id
    stickers = [m.sticker for m in (animated, video, static) if m.sticker]
    formats = [(sticker.is_animated, sticker.is_video) for sticker in stickers]
    assert formats == [(True, False), (False, True), (False, False)]
    described = await bot.get_file(stickers[0].file_id)
    assert (described.file_path or "").endswith(".tgs")


async def test_the_file_url_refuses_unknown_paths_wrong_tokens_and_injected_faults(bot, telegram):
    telegram.user_sends_file(ADA, "voice", b"ogg")
    [message] = await received(bot)
    assert message.voice is not None
    path = (await bot.get_file(message.voice.file_id)).file_path
    async with aiohttp.ClientSession() as http:
        unknown = await http.get(f"{telegram.base_url}/file/bot{telegram.token}/voice/nope.oga")
        wrong = await http.get(f"{telegram.base_url}/file/bot1:nope/{path}")
        telegram.fail_next("download", status=502)
        failed = await http.get(f"{telegram.base_url}/file/bot{telegram.token}/{path}")
        served = await http.get(f"{telegram.base_url}/file/bot{telegram.token}/{path}")
        assert (unknown.status, wrong.status, failed.status, served.status) == (404, 401, 502, 200)
        assert await served.read() == b"ogg"
    assert [c.params["file_path"] for c in telegram.calls if c.method == "download"][-1] == path
