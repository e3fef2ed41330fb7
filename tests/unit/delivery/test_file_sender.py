"""Files out without NATS: which method sends a file, its caption, its notices, and the upload
and the album at the HTTP edge (httpx's MockTransport)."""

import httpx
import msgspec
import pytest

from services.delivery import file_sender, render
from services.delivery.bot_api import (
    AlbumPhoto,
    EntityError,
    FloodWaitError,
    HttpTelegramApi,
    MessageEntity,
    RejectedError,
    SendMediaGroup,
    SendUpload,
)
from shared.errors import TransientError
from shared.ids import ConversationId, OutId
from shared.messages.contract import Attachment, Chat
from shared.messages.outbound import SendFile
from shared.messages.tools import FileToSend, SendAs
from tests.kit.attachments import png

TOKEN = "123456:SECRET-token-value"
BASE = "https://bot-api.example"
CHAT = Chat(conversation_id=ConversationId("tg_42"), channel="telegram", kind="private", chat_id=42)
IMAGE = png(16, 16)


def offer(media_type: str, send_as: SendAs = "auto", size: int = 100) -> SendFile:
    file = Attachment(
        object_name="tg_42/f", file_name="f.bin", media_type=media_type, size=size, path="f.bin"
    )
    return SendFile(chat=CHAT, out_id=OutId("fil_a"), file=file, send_as=send_as)


@pytest.mark.parametrize(
    ("media_type", "method"),
    [
        ("image/png", "sendPhoto"),
        ("image/jpeg", "sendPhoto"),
        ("image/webp", "sendPhoto"),
        ("audio/mpeg", "sendAudio"),
        ("audio/mp4", "sendAudio"),
        ("video/mp4", "sendVideo"),
        ("image/gif", "sendAnimation"),
        ("audio/ogg", "sendDocument"),  # a voice message only when asked for
        ("application/pdf", "sendDocument"),
    ],
)
def test_auto_picks_the_method_by_media_type(media_type, method):
    assert file_sender.method_for(offer(media_type), IMAGE) == method


@pytest.mark.parametrize(
    ("send_as", "method"),
    [("document", "sendDocument"), ("voice", "sendVoice"), ("audio", "sendAudio")],
)
def test_an_explicit_send_as_wins(send_as, method):
    assert file_sender.method_for(offer("image/png", send_as), IMAGE) == method


def test_a_photo_telegram_would_refuse_goes_as_a_document():
    too_big = IMAGE + b"\x00" * file_sender.MAX_PHOTO_BYTES  # PNG readers stop at IEND
    assert file_sender.method_for(offer("image/png"), too_big) == "sendDocument"
    assert file_sender.method_for(offer("image/png", "photo"), png(9600, 500)) == "sendDocument"
    assert file_sender.method_for(offer("image/png"), png(4000, 200)) == "sendPhoto"  # 20:1


def test_a_long_caption_rides_in_part_and_the_rest_follows():
    caption = "**Chart** " + "word " * 500
    first, rest = file_sender.caption_parts(caption)
    assert len(first.text.encode("utf-16-le")) // 2 <= file_sender.MAX_CAPTION_UNITS
    assert first.entities[0] == MessageEntity(type="bold", offset=0, length=5)
    assert rest
    assert file_sender.caption_parts("") == (render.Part(text=""), [])


def test_notices_round_the_size_up():
    just_over = offer("application/zip", size=file_sender.MAX_FILE_BYTES + 1)
    assert file_sender.unsendable_notice(just_over, None) == (
        "⚠️ f.bin is 51 MB; Telegram bots can send files up to 50 MB."
    )
    gone = offer("application/zip")
    assert file_sender.unsendable_notice(gone, None) == (
        "⚠️ I could not send f.bin (it is no longer stored)."
    )


def api_answering(status: int, body: object, seen: list[httpx.Request]) -> HttpTelegramApi:
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(status, content=msgspec.json.encode(body))

    return HttpTelegramApi(httpx.AsyncClient(transport=httpx.MockTransport(handle)), BASE, TOKEN)


UPLOAD = SendUpload(
    method="sendPhoto",
    chat_id=42,
    file_name="cat.png",
    media_type="image/png",
    data=IMAGE,
    caption="A cat",
    caption_entities=(MessageEntity(type="bold", offset=2, length=3),),
    message_thread_id=7,
)


async def test_an_upload_is_multipart_with_the_file_named_after_the_method():
    seen: list[httpx.Request] = []
    api = api_answering(200, {"ok": True, "result": {"message_id": 9}}, seen)
    assert await api.send_upload(UPLOAD) == 9
    [request] = seen
    assert request.url.path == f"/bot{TOKEN}/sendPhoto"
    assert request.headers["content-type"].startswith("multipart/form-data; boundary=")
    body = request.content
    assert b'name="photo"; filename="cat.png"' in body
    assert b"Content-Type: image/png" in body
    assert IMAGE in body
    assert b'name="caption_entities"\r\n\r\n[{"type":"bold","offset":2,"length":3}]' in body
    assert b'name="message_thread_id"\r\n\r\n7' in body
    assert request.extensions["timeout"]["read"] == 600.0


@pytest.mark.parametrize(
    ("status", "error"),
    [(429, FloodWaitError), (502, TransientError), (400, RejectedError)],
)
async def test_an_upload_error_is_classified_like_any_call(status, error):
    refusal = {"ok": False, "error_code": status, "description": "no", "parameters": {}}
    api = api_answering(status, refusal, [])
    with pytest.raises(error):
        await api.send_upload(UPLOAD)


async def test_an_unreachable_upload_is_transient_and_never_shows_the_token():
    def unreachable(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"cannot connect to {request.url}", request=request)

    api = HttpTelegramApi(
        httpx.AsyncClient(transport=httpx.MockTransport(unreachable)), BASE, TOKEN
    )
    with pytest.raises(TransientError, match=r"sendPhoto") as caught:
        await api.send_upload(UPLOAD)
    assert TOKEN not in str(caught.value)


ALBUM = SendMediaGroup(
    chat_id=42,
    photos=(
        AlbumPhoto(
            file_name="a.png",
            media_type="image/png",
            data=IMAGE,
            caption="A cat",
            caption_entities=(MessageEntity(type="bold", offset=2, length=3),),
        ),
        AlbumPhoto(file_name="b.jpg", media_type="image/jpeg", data=b"\xff\xd8\xffjpeg"),
    ),
    message_thread_id=7,
)


async def test_an_album_is_one_multipart_call_attaching_each_photo():
    seen: list[httpx.Request] = []
    answer = {"ok": True, "result": [{"message_id": 9}, {"message_id": 10}]}
    api = api_answering(200, answer, seen)
    assert await api.send_media_group(ALBUM) == [9, 10]
    [request] = seen
    assert request.url.path == f"/bot{TOKEN}/sendMediaGroup"
    body = request.content
    media = [
        {
            "type": "photo",
            "media": "attach://f0",
            "caption": "A cat",
            "caption_entities": [{"type": "bold", "offset": 2, "length": 3}],
        },
        {"type": "photo", "media": "attach://f1"},
    ]
    assert b'name="media"\r\n\r\n' + msgspec.json.encode(media) + b"\r\n" in body
    assert b'name="f0"; filename="a.png"\r\nContent-Type: image/png\r\n\r\n' + IMAGE in body
    assert (
        b'name="f1"; filename="b.jpg"\r\nContent-Type: image/jpeg\r\n\r\n\xff\xd8\xffjpeg' in body
    )
    assert b'name="message_thread_id"\r\n\r\n7' in body
    assert b'name="chat_id"\r\n\r\n42' in body
    assert request.extensions["timeout"]["read"] == 600.0


@pytest.mark.parametrize(
    ("status", "description", "error"),
    [
        (429, "Too Many Requests", FloodWaitError),
        (502, "Bad Gateway", TransientError),
        (400, "Bad Request: can't parse entities", EntityError),
        (400, "Bad Request: MEDIA_INVALID", RejectedError),
    ],
)
async def test_an_album_error_is_classified_like_any_call(status, description, error):
    refusal = {"ok": False, "error_code": status, "description": description, "parameters": {}}
    api = api_answering(status, refusal, [])
    with pytest.raises(error):
        await api.send_media_group(ALBUM)


async def test_an_unreachable_album_is_transient_and_never_shows_the_token():
    def unreachable(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"cannot connect to {request.url}", request=request)

    api = HttpTelegramApi(
        httpx.AsyncClient(transport=httpx.MockTransport(unreachable)), BASE, TOKEN
    )
    with pytest.raises(TransientError, match=r"sendMediaGroup") as caught:
        await api.send_media_group(ALBUM)
    assert TOKEN not in str(caught.value)


def test_an_output_with_more_is_one_sendfile_a_file():
    first = offer("image/png")
    other = Attachment(
        object_name="tg_42/g", file_name="g.png", media_type="image/png", size=5, path="g.png"
    )
    output = msgspec.structs.replace(
        first, caption="one", more=[FileToSend(attachment=other, caption="two", send_as="photo")]
    )
    items = file_sender.files_of(output)
    assert [(i.file, i.caption, i.send_as, i.more) for i in items] == [
        (first.file, "one", "auto", []),
        (other, "two", "photo", []),
    ]
    assert {(i.out_id, i.chat) for i in items} == {(output.out_id, output.chat)}
