"""Attachments per model call (SPEC §8.1, §8.2): the table, the notes, the limits, the resizing."""

import io
import subprocess
import sys

import msgspec
import pytest
from PIL import Image

from services.session import follow_ups, image_fit, inbox, media
from services.session.media import MediaUnavailableError, Refused
from services.session.providers.content_parts import user_text
from services.session.providers.protocol import InlineMedia, MediaNote, ModelRequest
from shared.ids import TurnId
from shared.messages.contract import Attachment, Sender
from shared.messages.history import UserMessage
from shared.messages.session import HandleMessage
from shared.model_config import ModelConfig
from tests.integration.test_session import handle
from tests.kit.attachments import png, size_of

TURN = TurnId("t1")
ADA = Sender(user_id=1, display_name="Ada")
MIB = 1024 * 1024


def model(*capabilities: str, provider: str = "openai_chat", **media_table: object) -> ModelConfig:
    table = {"provider": provider, "model": "m", "capabilities": ["tools", *capabilities]}
    return msgspec.convert(table | {"media": media_table}, ModelConfig)


def attachment(name: str, media_type: str, size: int = 10, **extra: str) -> Attachment:
    fields = {"object_name": f"cli_x/{name}", "error": ""} | extra
    return Attachment(
        object_name=fields["object_name"],
        file_name=name,
        media_type=media_type,
        size=size,
        path=f"upload/{name}",
        error=fields["error"],
    )


class Reader:
    """Files in memory, images fitted as the real store fits them; counts what it read."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.read: list[str] = []

    async def original(self, attachment: Attachment) -> bytes:
        self.read.append(attachment.file_name)
        if attachment.object_name not in self.files:
            raise MediaUnavailableError("the file is no longer stored")
        return self.files[attachment.object_name]

    async def image(self, attachment: Attachment, max_px: int) -> tuple[str, bytes]:
        data = await self.original(attachment)
        try:
            return image_fit.fitted(data, attachment.media_type, max_px)
        except image_fit.UnreadableImageError as exc:
            raise MediaUnavailableError(str(exc)) from None


def asking(*attachments: Attachment, per_message: int = 1) -> ModelRequest:
    """A request whose history has the attachments in user messages, oldest first."""
    batches = [attachments[i : i + per_message] for i in range(0, len(attachments), per_message)]
    history = [
        UserMessage(turn_id=TURN, text=f"message {n}", sender=ADA, attachments=list(batch))
        for n, batch in enumerate(batches)
    ]
    return ModelRequest(system_prompt="s", history=history, tools=[])


NO_IMAGES = "the model does not accept image input"


@pytest.mark.parametrize(
    ("media_type", "capabilities", "provider", "expected"),
    [
        ("image/png", ["image_in"], "openai_chat", "image"),
        ("image/webp", ["image_in"], "anthropic", "image"),
        ("image/png", [], "openai_chat", NO_IMAGES),
        (
            "image/tiff",
            ["image_in"],
            "openai_chat",
            "media type image/tiff not accepted by the model",
        ),
        ("application/pdf", ["pdf_in"], "anthropic", "document"),
        ("application/pdf", ["file_in"], "openai_chat", "the model does not accept PDF input"),
        ("audio/mpeg", ["audio_in"], "openai_chat", "audio"),
        (
            "audio/ogg",
            ["audio_in"],
            "openai_chat",
            "media type audio/ogg not accepted by the model",
        ),
        ("audio/wav", [], "openai_chat", "the model does not accept audio input"),
        ("audio/wav", ["audio_in"], "anthropic", "the model does not accept audio input"),
        (
            "video/mp4",
            ["image_in", "file_in"],
            "openai_chat",
            "the model does not accept video input",
        ),
        ("application/zip", ["file_in"], "openai_responses", "file"),
        ("application/zip", ["image_in"], "openai_chat", "the model does not accept file input"),
        ("text/csv", ["file_in"], "anthropic", "file"),
        (
            "application/zip",
            ["file_in"],
            "anthropic",
            "media type application/zip not accepted by the model",
        ),
    ],
)
def test_each_row_of_the_table_decides_how_a_file_goes(
    media_type, capabilities, provider, expected
):
    found = media.decide(attachment("f", media_type), model(*capabilities, provider=provider))
    assert found == (
        expected if expected in ("image", "document", "audio", "file") else Refused(reason=expected)
    )


def test_a_file_that_failed_to_download_is_always_a_note():
    able = model("image_in", "pdf_in", "file_in")
    failed = attachment("cat.png", "image/png", object_name="", error="Telegram answered 400")
    unstored = attachment("cat.png", "image/png", object_name="")
    assert media.decide(failed, able) == Refused(reason="download failed: Telegram answered 400")
    assert media.decide(unstored, able) == Refused(
        reason="download failed: the file was not stored"
    )


def test_the_note_has_the_exact_form():
    note = media.note(attachment("cat.png", "image/png"), NO_IMAGES)
    assert note == MediaNote(
        text="[Attachment not shown to the model: upload/cat.png | name: cat.png | "
        "type: image/png | reason: the model does not accept image input]"
    )


async def test_a_request_gets_a_part_per_attachment_keyed_by_object_name_or_path():
    cat = attachment("cat.png", "image/png")
    clip = attachment("clip.mp4", "video/mp4")
    lost = attachment("lost.pdf", "application/pdf", object_name="", error="too big")
    data = png(32, 16)
    reader = Reader({cat.object_name: data})
    request = asking(cat, clip, lost)
    shaped = await media.for_model(model("image_in", "pdf_in"), request, reader)
    assert list(shaped.media) == [cat.object_name, clip.object_name, "upload/lost.pdf"]
    assert shaped.media[cat.object_name] == InlineMedia(
        kind="image", media_type="image/png", file_name="cat.png", data=data
    )
    assert shaped.media[clip.object_name] == media.note(
        clip, "the model does not accept video input"
    )
    assert shaped.media["upload/lost.pdf"] == media.note(lost, "download failed: too big")
    assert reader.read == ["cat.png"]  # notes need no bytes
    assert shaped.history == request.history  # history keeps the references only


async def test_the_same_file_for_a_text_only_model_is_a_note():
    cat = attachment("cat.png", "image/png")
    reader = Reader({cat.object_name: png(8, 8)})
    shaped = await media.for_model(model(), asking(cat), reader)
    assert shaped.media == {cat.object_name: media.note(cat, NO_IMAGES)}
    assert reader.read == []


async def test_without_attachments_or_a_reader_the_request_is_unchanged():
    plain = ModelRequest(
        system_prompt="s", history=[UserMessage(turn_id=TURN, text="hi", sender=ADA)], tools=[]
    )
    cat = attachment("cat.png", "image/png")
    assert await media.for_model(model("image_in"), plain, Reader({})) is plain
    assert (await media.for_model(model("image_in"), asking(cat), None)).media == {}


async def test_a_file_the_store_no_longer_has_is_a_download_failed_note():
    doc = attachment("a.pdf", "application/pdf")
    shaped = await media.for_model(model("pdf_in"), asking(doc), Reader({}))
    assert shaped.media == {
        doc.object_name: media.note(doc, "download failed: the file is no longer stored")
    }


async def test_an_unreadable_image_is_a_download_failed_note():
    bad = attachment("bad.png", "image/png")
    shaped = await media.for_model(model("image_in"), asking(bad), Reader({bad.object_name: b"no"}))
    reason = "download failed: not a readable image (UnidentifiedImageError)"
    assert shaped.media == {bad.object_name: media.note(bad, reason)}


async def test_past_20_images_the_oldest_become_notes():
    images = [attachment(f"i{n}.png", "image/png") for n in range(22)]
    data = png(4, 4)
    reader = Reader({a.object_name: data for a in images})
    shaped = await media.for_model(model("image_in"), asking(*images, per_message=5), reader)
    parts = [shaped.media[a.object_name] for a in images]
    assert parts[:2] == [media.note(a, "more than 20 images in the request") for a in images[:2]]
    assert all(isinstance(part, InlineMedia) for part in parts[2:])
    assert sorted(reader.read) == sorted(a.file_name for a in images[2:])  # never read


async def test_past_30_mib_the_oldest_become_notes():
    files = [attachment(f"f{n}.bin", "application/octet-stream", size=10 * MIB) for n in range(4)]
    reader = Reader({a.object_name: bytes(10 * MIB) for a in files})
    shaped = await media.for_model(model("file_in"), asking(*files), reader)
    assert shaped.media[files[0].object_name] == media.note(files[0], "request over 30 MiB")
    assert [type(shaped.media[a.object_name]) for a in files[1:]] == [InlineMedia] * 3
    assert reader.read == ["f3.bin", "f2.bin", "f1.bin"]  # newest first; the oldest not read


async def test_a_big_new_file_does_not_push_out_older_ones_that_fit():
    small = attachment("small.bin", "application/octet-stream", size=MIB)
    huge = attachment("huge.bin", "application/octet-stream", size=31 * MIB)
    reader = Reader({small.object_name: bytes(MIB)})
    shaped = await media.for_model(model("file_in"), asking(small, huge), reader)
    assert shaped.media[huge.object_name] == media.note(huge, "request over 30 MiB")
    assert isinstance(shaped.media[small.object_name], InlineMedia)


async def test_an_image_is_resized_to_max_image_px_on_its_long_side():
    wide = attachment("wide.png", "image/png")
    reader = Reader({wide.object_name: png(3000, 1000)})
    shaped = await media.for_model(model("image_in", max_image_px=1000), asking(wide), reader)
    part = shaped.media[wide.object_name]
    assert isinstance(part, InlineMedia)
    assert (part.media_type, size_of(part.data)) == ("image/png", (1000, 333))


def test_an_image_that_fits_is_sent_as_it_is():
    data = png(800, 600)
    assert image_fit.fitted(data, "image/png", 2048) == ("image/png", data)


def test_an_image_still_over_5_mib_is_re_encoded_as_jpeg():
    noise = png(1400, 1400, is_noise=True)  # ~5.9 MB: no resize needed, but too big
    assert len(noise) > image_fit.MAX_IMAGE_BYTES
    media_type, data = image_fit.fitted(noise, "image/png", 2048)
    assert media_type == "image/jpeg"
    assert data.startswith(b"\xff\xd8")  # a JPEG
    assert len(data) <= image_fit.MAX_IMAGE_BYTES
    assert size_of(data) == (1400, 1400)


def test_a_user_message_with_attachments_lists_them_after_its_text():
    message = UserMessage(
        turn_id=TURN,
        text="What are these?",
        sender=ADA,
        attachments=[
            attachment("cat.png", "image/png", size=12_345),
            attachment("report.pdf", "application/pdf", size=3 * MIB + MIB // 2),
            attachment("a.txt", "text/plain", size=17),
        ],
    )
    assert user_text(message) == (
        "What are these?\n\nAttachments:\n"
        "- upload/cat.png (cat.png, image/png, 12 KiB)\n"
        "- upload/report.pdf (report.pdf, application/pdf, 3.5 MiB)\n"
        "- upload/a.txt (a.txt, text/plain, 17 B)"
    )
    caption_less = msgspec.structs.replace(message, text="", attachments=message.attachments[2:])
    assert user_text(caption_less) == "Attachments:\n- upload/a.txt (a.txt, text/plain, 17 B)"
    assert user_text(msgspec.structs.replace(message, attachments=[])) == "What are these?"


def with_files(seq: int, *attachments: Attachment) -> inbox.Entry:
    message = handle(f"message {seq}", seq)
    received = msgspec.structs.replace(message.message, attachments=list(attachments))
    return inbox.Entry(seq=seq, input=msgspec.structs.replace(message, message=received))


def test_the_turns_message_and_folded_follow_ups_keep_every_attachment():
    cat, dog, doc = (attachment(n, "image/png") for n in ("cat.png", "dog.png", "doc.png"))
    first = with_files(1, cat)
    assert isinstance(first.input, HandleMessage)
    started = follow_ups.user_message(TURN, first.input)
    assert (started.text, started.attachments) == ("message 1", [cat])
    folded = follow_ups.folded(
        TURN, [with_files(2, dog), with_files(3), with_files(4, doc)], tag=True
    )
    assert folded.attachments == [dog, doc]
    assert folded.follow_ups == [2, 3, 4]


def test_the_session_service_does_not_import_pillow_until_an_image_comes():
    code = (
        "import sys, services.session.service, services.session.media_store; "
        "assert 'PIL' not in sys.modules, 'PIL imported'"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def test_an_image_goes_with_the_media_type_of_its_bytes():
    out = io.BytesIO()
    Image.new("RGB", (10, 10)).save(out, format="JPEG")
    assert image_fit.fitted(out.getvalue(), "image/png", 2048) == ("image/jpeg", out.getvalue())
