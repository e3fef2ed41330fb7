"""Which file a Telegram message carries, and how Stellaclaw names it (SPEC §2.4, §12.3)."""

from datetime import UTC, datetime, timedelta, timezone

import pytest
from aiogram.types import Message

from services.ingress_telegram import files
from shared.messages.contract import Attachment

SENT_AT = datetime(2025, 3, 1, 12, 30, 5, tzinfo=UTC)


def telegram_message(**fields: object) -> Message:
    """A Message decoded from the JSON Telegram sends, as aiogram decodes it."""
    raw: dict[str, object] = {
        "message_id": 11,
        "date": int(SENT_AT.timestamp()),
        "chat": {"id": 42, "type": "private", "first_name": "Ada"},
        "from": {"id": 42, "is_bot": False, "first_name": "Ada"},
    }
    return Message.model_validate(raw | fields)


def ids(unique: str, size: int | None = 1000) -> dict[str, object]:
    found: dict[str, object] = {"file_id": f"id-{unique}", "file_unique_id": unique}
    return found if size is None else found | {"file_size": size}


def test_a_photo_is_its_largest_size_named_after_its_unique_id():
    sizes = [
        ids("s", 900) | {"width": 90, "height": 60},
        ids("x", 90_000) | {"width": 800, "height": 533},
        ids("m", 9_000) | {"width": 320, "height": 213},
    ]
    found = files.file_of(telegram_message(photo=sizes, caption="look"))
    assert found == files.IncomingFile(
        kind="photo",
        file_id="id-x",
        file_unique_id="x",
        file_name="photo_x.jpg",
        media_type="image/jpeg",
        declared_size=90_000,
    )


def test_a_document_keeps_its_clients_name_and_media_type():
    document = ids("d") | {"file_name": "Q1 report.pdf", "mime_type": "application/x-pdf"}
    found = files.file_of(telegram_message(document=document))
    assert found is not None
    assert (found.kind, found.file_name, found.media_type) == (
        "document",
        "Q1 report.pdf",
        "application/x-pdf",
    )


@pytest.mark.parametrize(
    ("document", "name", "media_type"),
    [
        ({"file_name": "table.csv"}, "table.csv", "text/csv"),
        ({"file_name": "data.unknownext"}, "data.unknownext", "application/octet-stream"),
        ({}, "document_d", "application/octet-stream"),
    ],
)
def test_a_documents_media_type_is_guessed_from_its_name_without_a_mime_type(
    document, name, media_type
):
    found = files.file_of(telegram_message(document=ids("d") | document))
    assert found is not None
    assert (found.file_name, found.media_type) == (name, media_type)


@pytest.mark.parametrize(
    ("kind", "fields", "name", "media_type"),
    [
        ("voice", {"duration": 2, "mime_type": "audio/ogg"}, "voice_v.ogg", "audio/ogg"),
        ("voice", {"duration": 2}, "voice_v.ogg", "audio/ogg"),
        ("video_note", {"length": 240, "duration": 3}, "video_note_v.mp4", "video/mp4"),
        ("audio", {"duration": 3}, "audio_v.mp3", "audio/mpeg"),
        ("audio", {"duration": 3, "file_name": "take.wav"}, "take.wav", "audio/x-wav"),
        ("video", {"width": 1, "height": 1, "duration": 1}, "video_v.mp4", "video/mp4"),
        (
            "video",
            {"width": 1, "height": 1, "duration": 1, "file_name": "clip.mov"},
            "clip.mov",
            "video/quicktime",
        ),
    ],
)
def test_each_kind_has_its_name_and_media_type(kind, fields, name, media_type):
    found = files.file_of(telegram_message(**{kind: ids("v") | fields}))
    assert found is not None
    assert (found.kind, found.file_name, found.media_type) == (kind, name, media_type)


@pytest.mark.parametrize(
    ("is_animated", "is_video", "name", "media_type"),
    [
        (False, False, "sticker_k.webp", "image/webp"),
        (True, False, "sticker_k.tgs", "application/x-tgsticker"),
        (False, True, "sticker_k.webm", "video/webm"),
    ],
)
def test_a_stickers_format_decides_its_name(is_animated, is_video, name, media_type):
    sticker = ids("k") | {
        "type": "regular",
        "width": 512,
        "height": 512,
        "is_animated": is_animated,
        "is_video": is_video,
    }
    found = files.file_of(telegram_message(sticker=sticker))
    assert found is not None
    assert (found.file_name, found.media_type) == (name, media_type)


def test_an_animation_is_taken_before_the_document_telegram_adds_to_it():
    animation = ids("a") | {"width": 1, "height": 1, "duration": 1, "mime_type": "video/mp4"}
    message = telegram_message(animation=animation, document=ids("a") | {"mime_type": "video/mp4"})
    found = files.file_of(message)
    assert found is not None
    assert (found.kind, found.file_name) == ("animation", "animation_a.mp4")


def test_a_message_without_a_file_has_none():
    assert files.file_of(telegram_message(text="hello")) is None
    assert files.file_of(telegram_message(location={"latitude": 1.0, "longitude": 2.0})) is None


@pytest.mark.parametrize(
    ("name", "safe"),
    [
        ("Q1 report.pdf", "Q1_report.pdf"),
        ("../../etc/passwd", ".._.._etc_passwd"),
        ("отчёт-2025.txt", "_____-2025.txt"),
        ("a" * 200 + ".tar.gz", "a" * 117 + ".gz"),
        ("a" * 200, "a" * 120),
        ("b" * 130 + "." + "c" * 20, ("b" * 130 + "." + "c" * 20)[:120]),
    ],
)
def test_names_are_sanitized_and_cut_keeping_the_extension(name, safe):
    assert files.safe_name(name) == safe
    assert len(files.safe_name(name)) <= files.MAX_NAME_CHARS


def test_the_upload_path_comes_from_the_time_the_message_was_sent_in_utc():
    in_paris = SENT_AT.astimezone(timezone(timedelta(hours=1)))
    assert files.upload_path("Q1 report.pdf", in_paris) == "upload/20250301-123005-Q1_report.pdf"


def test_the_notice_of_a_file_over_the_limit_is_spec_text():
    attachment = Attachment(
        object_name="",
        file_name="talk.mp4",
        media_type="video/mp4",
        size=int(23.44 * 1024 * 1024),
        path="upload/20250301-123005-talk.mp4",
        error="file too big: 23.4 MB; Telegram lets bots download files up to 20 MB",
    )
    assert files.is_too_big(attachment)
    assert files.too_big_notice(attachment) == (
        "⚠️ talk.mp4 is 23.4 MB; Telegram lets bots download files up to 20 MB. "
        "Send a smaller file or a link."
    )
    fine = Attachment(object_name="x", file_name="a", media_type="b", size=1, path="upload/a")
    assert not files.is_too_big(fine)
