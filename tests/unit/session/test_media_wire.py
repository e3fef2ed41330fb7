"""Attachments on each wire format (SPEC §7.2, §8.2), inline and by Files API id, against the
fake servers over real HTTP."""

import base64

import httpx
import msgspec
import pytest

from services.session.providers import file_uploads
from services.session.providers.anthropic import Anthropic
from services.session.providers.openai_chat import OpenAIChat
from services.session.providers.openai_responses import OpenAIResponses
from services.session.providers.protocol import (
    AuthError,
    InlineMedia,
    MediaNote,
    MediaPart,
    ModelRequest,
    StreamEvent,
)
from shared.ids import TurnId
from shared.messages.contract import Attachment, Sender
from shared.messages.history import UserMessage
from shared.model_config import ModelConfig
from tests.kit import anthropic_api, llm_api, openai_responses_api
from tests.kit.attachments import anthropic_media, chat_media, png, responses_media
from tests.kit.files_api import FILES_BETA, anthropic_files_api, responses_files_api
from tests.kit.media_wire import (
    Base64Source,
    DocumentBlock,
    FileSource,
    ImageBlock,
    InputAudio,
    InputFile,
    InputImage,
    Marker,
    TextSource,
    decoded_data_url,
)

TURN = TurnId("t1")
ADA = Sender(user_id=1, display_name="Ada")
IMAGE = png(40, 30)
PDF = b"%PDF-1.4 a tiny document"
SONG = b"ID3 not really an mp3"
NOTE = MediaNote(text="[Attachment not shown to the model: upload/clip.mp4 | … ]")
FILES = {  # name → media type, data, the part normalization made of it
    "cat.png": ("image/png", IMAGE, "image"),
    "report.pdf": ("application/pdf", PDF, "document"),
    "song.mp3": ("audio/mpeg", SONG, "audio"),
    "notes.txt": ("text/plain", b"buy milk", "file"),
}


def attachment(name: str, media_type: str, size: int) -> Attachment:
    return Attachment(
        object_name=f"cli_x/{name}",
        file_name=name,
        media_type=media_type,
        size=size,
        path=f"upload/{name}",
    )


def request_with(*names: str, with_note: bool = True) -> ModelRequest:
    attachments = [attachment(n, FILES[n][0], len(FILES[n][1])) for n in names]
    parts: dict[str, MediaPart] = {
        a.object_name: InlineMedia(
            kind=FILES[a.file_name][2],  # type: ignore[arg-type]
            media_type=a.media_type,
            file_name=a.file_name,
            data=FILES[a.file_name][1],
        )
        for a in attachments
    }
    if with_note:
        clip = attachment("clip.mp4", "video/mp4", 99)
        attachments.append(clip)
        parts[clip.object_name] = NOTE
    message = UserMessage(turn_id=TURN, text="Look:", sender=ADA, attachments=attachments)
    return ModelRequest(system_prompt="sys", history=[message], tools=[], media=parts)


def model(provider: str, base_url: str, **extra: object) -> ModelConfig:
    table = {"provider": provider, "model": "m", "base_url": base_url, "api_key": "k"}
    return msgspec.convert(table | extra, ModelConfig)


class Ids:
    """File ids in memory (the session keeps them on disk: `media_store`)."""

    def __init__(self) -> None:
        self.known: dict[tuple[str, str], str] = {}

    def file_id(self, base_url: str, sha256: str) -> str | None:
        return self.known.get((base_url, sha256))

    def remember(self, base_url: str, sha256: str, file_id: str) -> None:
        self.known[(base_url, sha256)] = file_id


@pytest.fixture
async def http():
    async with httpx.AsyncClient(timeout=httpx.Timeout(10.0)) as client:
        yield client


def ignore(event: StreamEvent) -> None:
    pass


async def test_openai_chat_sends_image_url_file_and_input_audio_parts(http):
    async with llm_api.llm_api(api_key="k") as fake:
        fake.script(llm_api.reply("ok"))
        request = request_with("cat.png", "report.pdf", "song.mp3")
        await OpenAIChat().complete(http, model("openai_chat", fake.base_url), request, ignore)
    [sent] = fake.requests
    assert (sent.last_user_text or "").startswith("Look:\n\nAttachments:\n- upload/cat.png")
    image, document, audio = chat_media(sent)
    content = sent.messages[-1].content
    assert isinstance(content, list)
    note = content[-1]
    assert image.image_url is not None
    assert decoded_data_url(image.image_url.url) == ("image/png", IMAGE)
    assert document.file is not None
    assert document.file.filename == "report.pdf"
    assert decoded_data_url(document.file.file_data) == ("application/pdf", PDF)
    assert audio.input_audio is not None
    assert audio.input_audio.format == "mp3"
    assert base64.b64decode(audio.input_audio.data) == SONG
    assert (note.type, note.text) == ("text", NOTE.text)


async def test_openai_responses_sends_input_image_input_file_and_a_note_as_text(http):
    async with openai_responses_api.responses_api(api_key="k") as fake:
        fake.script(openai_responses_api.reply("ok"))
        request = request_with("cat.png", "report.pdf")
        model_at = model("openai_responses", fake.base_url)
        await OpenAIResponses().complete(http, model_at, request, ignore)
    [sent] = fake.requests
    image, document = responses_media(sent)
    assert isinstance(image, InputImage)
    assert image.image_url is not None
    assert decoded_data_url(image.image_url) == ("image/png", IMAGE)
    assert isinstance(document, InputFile)
    assert document.filename == "report.pdf"
    assert document.file_data is not None
    assert decoded_data_url(document.file_data) == ("application/pdf", PDF)
    user = sent.last_user_text or ""
    assert user.startswith("Look:\n\nAttachments:\n")
    assert user.endswith(NOTE.text)


async def test_openai_responses_sends_audio_as_input_audio(http):
    async with openai_responses_api.responses_api(api_key="k") as fake:
        fake.script(openai_responses_api.reply("ok"))
        request = request_with("song.mp3", with_note=False)
        await OpenAIResponses().complete(
            http, model("openai_responses", fake.base_url), request, ignore
        )
    [audio] = responses_media(fake.requests[0])
    assert isinstance(audio, InputAudio)
    assert (audio.input_audio.format, base64.b64decode(audio.input_audio.data)) == ("mp3", SONG)


async def test_anthropic_sends_image_and_document_blocks_and_caches_the_last_one(http):
    async with anthropic_api.anthropic_api(api_key="k") as fake:
        fake.script(anthropic_api.reply("ok"))
        request = request_with("cat.png", "report.pdf", "notes.txt", with_note=False)
        await Anthropic().complete(http, model("anthropic", fake.base_url), request, ignore)
    [sent] = fake.requests
    image, document, text = anthropic_media(sent)
    assert isinstance(image, ImageBlock)
    assert isinstance(image.source, Base64Source)
    assert (image.source.media_type, image.source.decoded) == ("image/png", IMAGE)
    assert isinstance(document, DocumentBlock)
    assert isinstance(document.source, Base64Source)
    assert (document.source.media_type, document.source.decoded) == ("application/pdf", PDF)
    assert isinstance(text, DocumentBlock)
    assert text.source == TextSource(media_type="text/plain", data="buy milk")
    blocks = sent.typed.messages[-1].blocks
    assert blocks[-1] == text  # the files follow the text; the cache marker is on the last one
    assert text.cache_control == Marker(type="ephemeral")
    assert [b.cache_control for b in blocks[:-1]] == [None] * (len(blocks) - 1)


async def test_anthropic_files_api_uploads_once_and_sends_file_sources(http):
    ids = Ids()
    async with anthropic_files_api(api_key="k") as fake:
        fake.script(anthropic_api.reply("one"), anthropic_api.reply("two"))
        at = model("anthropic", fake.base_url, media={"transport": "files_api"})
        for _ in range(2):  # the second call finds the ids it remembered
            request = await file_uploads.by_id(http, at, request_with("cat.png", "notes.txt"), ids)
            await Anthropic().complete(http, at, request, ignore)
    image_upload, text_upload = fake.uploads
    assert (image_upload.filename, image_upload.media_type, image_upload.data) == (
        "cat.png",
        "image/png",
        IMAGE,
    )
    assert (text_upload.media_type, text_upload.data) == ("text/plain", b"buy milk")
    assert image_upload.headers["anthropic-beta"] == FILES_BETA
    assert image_upload.headers["x-api-key"] == "k"
    for sent in fake.requests:
        image, text = anthropic_media(sent)
        assert image.source == FileSource(file_id=image_upload.file_id)
        assert text.source == FileSource(file_id=text_upload.file_id)
        assert FILES_BETA in sent.headers["anthropic-beta"]


async def test_openai_responses_files_api_uploads_with_purpose_user_data(http):
    ids = Ids()
    async with responses_files_api(api_key="k") as fake:
        fake.script(openai_responses_api.reply("ok"))
        at = model("openai_responses", fake.base_url, media={"transport": "files_api"})
        request = await file_uploads.by_id(http, at, request_with("cat.png", "report.pdf"), ids)
        await OpenAIResponses().complete(http, at, request, ignore)
    image_upload, pdf_upload = fake.uploads
    assert (image_upload.purpose, pdf_upload.purpose) == ("user_data", "user_data")
    assert image_upload.headers["authorization"] == "Bearer k"
    assert pdf_upload.data == PDF
    image, document = responses_media(fake.requests[0])
    assert image == InputImage(file_id=image_upload.file_id)
    assert document == InputFile(file_id=pdf_upload.file_id)


async def test_inline_transport_and_openai_chat_never_upload(http):
    ids = Ids()
    request = request_with("cat.png")
    chat = model("openai_chat", "http://127.0.0.1:9/v1", media={"transport": "files_api"})
    inline = model("anthropic", "http://127.0.0.1:9/v1")
    assert await file_uploads.by_id(http, chat, request, ids) is request
    assert await file_uploads.by_id(http, inline, request, ids) is request


async def test_a_refused_upload_is_a_provider_error(http):
    async with anthropic_files_api(api_key="right") as fake:
        at = model("anthropic", fake.base_url, api_key="wrong", media={"transport": "files_api"})
        with pytest.raises(AuthError, match="HTTP 401 from "):
            await file_uploads.by_id(http, at, request_with("cat.png"), Ids())
    assert fake.uploads == []
