"""Files on the test kit's Telegram server, both ways.

The bot's uploads (`sendPhoto`, `sendDocument`, ...) are multipart forms whose file part is named
after the method; `read_upload` takes it out and `sent_file` checks it as Telegram does.

What users send is kept by a `FileHost`, as the Bot API keeps it: `content` gives the Message
fields of a file (`photo` sizes, `document`, `voice`, ...), `get_file` answers getFile with a File
and its `file_path` (or Telegram's refusal of a file over 20 MB), and `read` serves the download
and counts it.
"""

import io
import itertools
import mimetypes
import warnings
from typing import Final, Literal, get_args

import msgspec
from aiohttp import web
from PIL import Image, UnidentifiedImageError

from tests.kit.telegram_wire import (
    BotApiError,
    Entity,
    Params,
    checked_caption,
)

MB: Final = 1 << 20
MAX_UPLOAD_BYTES: Final = 50 * MB  # what a bot may send
MAX_DOWNLOAD_BYTES: Final = 20 * MB  # what a bot may download with getFile
MAX_PHOTO_BYTES: Final = 10 * MB
MAX_PHOTO_SIDES_PX: Final = 10_000  # width + height
TOO_BIG: Final = "Bad Request: file is too big"
# The upload methods and the form field that carries each one's file.
UPLOAD_FIELDS: Final = {
    "sendphoto": "photo",
    "senddocument": "document",
    "sendaudio": "audio",
    "sendvoice": "voice",
    "sendvideo": "video",
    "sendanimation": "animation",
}
FileKind = Literal[
    "photo", "document", "audio", "voice", "video", "video_note", "animation", "sticker"
]
FILE_KINDS: Final[tuple[FileKind, ...]] = get_args(FileKind)
ALBUM_KINDS: Final = frozenset({"photo", "video", "audio", "document"})  # what sendMediaGroup takes
MAX_ALBUM_ITEMS: Final = 10
ATTACH: Final = "attach://"  # an album item's file: the multipart part of that name
# Where the Bot API keeps each kind (`file_path` is `<folder>/file_<n><extension>`).
_FOLDERS: Final[dict[FileKind, tuple[str, str]]] = {
    "photo": ("photos", ".jpg"),
    "document": ("documents", ""),
    "audio": ("music", ".mp3"),
    "voice": ("voice", ".oga"),
    "video": ("videos", ".mp4"),
    "video_note": ("video_notes", ".mp4"),
    "animation": ("animations", ".mp4"),
    "sticker": ("stickers", ".webp"),
}
# The smaller sides Telegram keeps of a photo besides the original (its `s`, `m` and `x` sizes).
_PHOTO_SIDES_PX: Final = (90, 320, 800)
_STICKER_FORMATS: Final = {"application/x-tgsticker": ".tgs", "video/webm": ".webm"}


class SentFile(msgspec.Struct, frozen=True, kw_only=True):
    """A file upload the server accepted, as it crossed the wire."""

    method: str  # as called: `sendPhoto`, `sendDocument`, ..., `sendMediaGroup`
    kind: str  # the Message field it fills: `photo`, `document`, `audio`, ...
    chat_id: int
    message_id: int
    file_name: str
    content_type: str
    data: bytes
    caption: str = ""
    caption_entities: tuple[Entity, ...] = ()
    message_thread_id: int | None = None
    parse_mode: str | None = None
    width: int = 0  # a photo's, read from its bytes
    height: int = 0
    media_group: str | None = None  # the media_group_id of an album of two or more, one call


class Upload(msgspec.Struct, frozen=True, kw_only=True):
    """The file part of a multipart upload."""

    file_name: str
    content_type: str
    data: bytes


class SendUpload(Params, frozen=True, kw_only=True):
    """The parameters of every upload method besides its file."""

    chat_id: int
    caption: str = ""
    caption_entities: list[Entity] | None = None
    parse_mode: str | None = None
    message_thread_id: int | None = None


class InputMedia(msgspec.Struct, frozen=True, kw_only=True):
    """An album item: InputMediaPhoto, InputMediaVideo, InputMediaAudio or InputMediaDocument."""

    type: str
    media: str  # `attach://<part>`; the kit serves uploads, not file_ids or URLs
    caption: str = ""
    caption_entities: list[Entity] | None = None
    parse_mode: str | None = None


class SendMediaGroup(Params, frozen=True, kw_only=True):
    chat_id: int
    media: list[InputMedia] | None = None
    message_thread_id: int | None = None


class HostedFile(msgspec.Struct, frozen=True, kw_only=True):
    """A file a user sent, as the Bot API keeps it."""

    file_id: str
    file_unique_id: str
    file_path: str
    size: int  # `file_size` as Telegram reports it; may be declared larger than `data`
    data: bytes

    def fields(self) -> dict[str, object]:
        return {
            "file_id": self.file_id,
            "file_unique_id": self.file_unique_id,
            "file_size": self.size,
        }


class FileHost:
    """The files users sent: what getFile describes and the file URL serves."""

    def __init__(self) -> None:
        self.downloaded: list[str] = []  # the file_id of every download served, in order
        self._by_id: dict[str, HostedFile] = {}
        self._by_path: dict[str, HostedFile] = {}
        self._serial = itertools.count(1)

    def content(
        self,
        kind: FileKind,
        data: bytes,
        *,
        file_name: str | None = None,
        mime_type: str | None = None,
        declared_size: int | None = None,
    ) -> dict[str, object]:
        """The Message fields of a file a user sends, as Telegram fills them in."""
        if kind == "photo":
            return {"photo": self._photo_sizes(data, declared_size)}
        extension = _extension(kind, file_name, mime_type)
        hosted = self._host(kind, data, extension, declared_size)
        fields = hosted.fields() | _kind_fields(kind, file_name, mime_type)
        content: dict[str, object] = {kind: fields}
        if kind == "animation":  # "for backward compatibility, the document field is also set"
            named = {"file_name": file_name, "mime_type": fields["mime_type"]}
            content["document"] = hosted.fields() | {k: v for k, v in named.items() if v}
        return content

    def get_file(self, file_id: str) -> dict[str, object]:
        """getFile's File, or Telegram's refusal (an unknown id; a file over 20 MB)."""
        hosted = self._by_id.get(file_id)
        if hosted is None:
            raise BotApiError(400, "Bad Request: invalid file_id")
        if hosted.size > MAX_DOWNLOAD_BYTES:
            raise BotApiError(400, TOO_BIG)
        return hosted.fields() | {"file_path": hosted.file_path}

    def read(self, file_path: str) -> bytes | None:
        """The bytes a download of `file_path` gets (counted), or None for an unknown path."""
        hosted = self._by_path.get(file_path)
        if hosted is None:
            return None
        self.downloaded.append(hosted.file_id)
        return hosted.data

    def downloads_of(self, message: dict[str, object]) -> int:
        """How many downloads were served of the files a message carries (any photo size)."""
        file_ids: set[object] = set()
        for kind in FILE_KINDS:
            found = message.get(kind)
            for media in found if isinstance(found, list) else [found]:
                if isinstance(media, dict):
                    file_ids.add(media["file_id"])
        return sum(file_id in file_ids for file_id in self.downloaded)

    def _host(
        self, kind: FileKind, data: bytes, extension: str, declared_size: int | None
    ) -> HostedFile:
        serial = next(self._serial)
        folder = _FOLDERS[kind][0]
        hosted = HostedFile(
            file_id=f"BQACAgIAAxkBAAI{serial:05d}{kind.replace('_', '')}",
            file_unique_id=f"AgAD{serial:04d}",
            file_path=f"{folder}/file_{serial}{extension}",
            size=len(data) if declared_size is None else declared_size,
            data=data,
        )
        self._by_id[hosted.file_id] = self._by_path[hosted.file_path] = hosted
        return hosted

    def _photo_sizes(self, data: bytes, declared_size: int | None) -> list[dict[str, object]]:
        """PhotoSizes from small to large; the largest is the photo as sent."""
        width, height = _dimensions(data) or (1280, 960)
        sizes: list[dict[str, object]] = []
        for side in _PHOTO_SIDES_PX:
            if side < max(width, height):
                small, small_width, small_height = _scaled(data, side, (width, height))
                hosted = self._host("photo", small, ".jpg", None)
                sizes.append(hosted.fields() | {"width": small_width, "height": small_height})
        largest = self._host("photo", data, ".jpg", declared_size)
        return [*sizes, largest.fields() | {"width": width, "height": height}]


def _kind_fields(kind: FileKind, file_name: str | None, mime_type: str | None) -> dict[str, object]:
    """The fields of a kind besides the file's ids and size."""
    named: dict[str, object] = {"file_name": file_name} if file_name else {}
    match kind:
        case "document":
            return named | ({"mime_type": mime_type} if mime_type else {})
        case "audio":
            return named | {"duration": 3, "mime_type": mime_type or "audio/mpeg"}
        case "voice":
            return {"duration": 2, "mime_type": mime_type or "audio/ogg"}
        case "video" | "animation":
            moving = {"width": 640, "height": 360, "duration": 3}
            return named | moving | {"mime_type": mime_type or "video/mp4"}
        case "video_note":
            return {"length": 240, "duration": 3}
        case "sticker":
            sticker_format = _STICKER_FORMATS.get(mime_type or "")
            return {
                "type": "regular",
                "width": 512,
                "height": 512,
                "is_animated": sticker_format == ".tgs",
                "is_video": sticker_format == ".webm",
                "emoji": "👍",
            }
        case _:  # photo: its sizes are made by FileHost
            return {}


def _extension(kind: FileKind, file_name: str | None, mime_type: str | None) -> str:
    if kind == "sticker":
        return _STICKER_FORMATS.get(mime_type or "", ".webp")
    if kind == "document":
        _, dot, suffix = (file_name or "").rpartition(".")
        if dot and suffix:
            return f".{suffix}"
        return mimetypes.guess_extension(mime_type or "") or ""
    return _FOLDERS[kind][1]


def _dimensions(data: bytes) -> tuple[int, int] | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                return image.size
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError):
        return None


def _scaled(data: bytes, side: int, size: tuple[int, int]) -> tuple[bytes, int, int]:
    """A copy whose longer side is `side`: a JPEG when `data` is an image, else a prefix of it."""
    ratio = side / max(size)
    width, height = max(1, round(size[0] * ratio)), max(1, round(size[1] * ratio))
    try:
        with Image.open(io.BytesIO(data)) as image:
            out = io.BytesIO()
            image.convert("RGB").resize((width, height)).save(out, format="JPEG")
            return out.getvalue(), width, height
    except (UnidentifiedImageError, OSError):
        return data[: max(1, int(len(data) * ratio))], width, height


async def read_upload(request: web.Request, field: str) -> Upload:
    """The file sent in the form part `field` (after `read_params` read the form)."""
    is_form = request.content_type == "multipart/form-data"
    part = (await request.post()).get(field) if is_form else None
    if not isinstance(part, web.FileField):  # a file_id or URL string: not what the kit serves
        raise BotApiError(400, f"Bad Request: there is no {field} in the request")
    return _upload(part)


async def read_album(request: web.Request, media: list[InputMedia]) -> list[Upload]:
    """The file of each album item, from the multipart part its `attach://` names."""
    is_form = request.content_type == "multipart/form-data"
    form = await request.post() if is_form else None
    uploads: list[Upload] = []
    for item in media:
        if not item.media.startswith(ATTACH):
            raise BotApiError(400, _NOT_ATTACHED)
        part = form.get(item.media.removeprefix(ATTACH)) if form is not None else None
        if not isinstance(part, web.FileField):
            raise BotApiError(400, "Bad Request: can't parse InputMedia: media not found")
        uploads.append(_upload(part))
    return uploads


def _upload(part: web.FileField) -> Upload:
    part.file.seek(0)  # one part may be attached twice
    data = part.file.read()
    if not data:
        raise BotApiError(400, "Bad Request: file must be non-empty")
    if len(data) > MAX_UPLOAD_BYTES:
        raise BotApiError(413, "Request Entity Too Large")
    return Upload(file_name=part.filename, content_type=part.content_type, data=data)


def sent_file(
    method: str, kind: str, params: SendUpload, upload: Upload, message_id: int
) -> SentFile:
    """The upload as accepted, after Telegram's checks on its caption and (a photo) its image."""
    entities = checked_caption(params.caption, params.caption_entities)
    width, height = photo_size(upload.data) if kind == "photo" else (0, 0)
    return SentFile(
        method=method,
        kind=kind,
        chat_id=params.chat_id,
        message_id=message_id,
        file_name=upload.file_name,
        content_type=upload.content_type,
        data=upload.data,
        caption=params.caption,
        caption_entities=entities,
        message_thread_id=params.message_thread_id,
        parse_mode=params.parse_mode,
        width=width,
        height=height,
    )


def photo_size(data: bytes) -> tuple[int, int]:
    """A photo's width and height, refused as Telegram refuses a photo it cannot take."""
    if len(data) > MAX_PHOTO_BYTES:
        raise BotApiError(400, "Bad Request: PHOTO_SAVE_FILE_INVALID")
    found = _dimensions(data)
    if found is None:
        raise BotApiError(400, "Bad Request: IMAGE_PROCESS_FAILED")
    width, height = found
    if width + height > MAX_PHOTO_SIDES_PX:
        raise BotApiError(400, "Bad Request: PHOTO_INVALID_DIMENSIONS")
    return width, height


def media_fields(sent: SentFile) -> dict[str, object]:
    """The fields a sent file adds to its Message: `photo` sizes, `document`, `audio`, ..."""
    ids = {"file_id": f"file-{sent.message_id}", "file_unique_id": f"u{sent.message_id}"}
    size = {"file_size": len(sent.data)}
    named = {**ids, "file_name": sent.file_name, "mime_type": sent.content_type, **size}
    kind = sent.kind
    fields: dict[str, object]
    match kind:
        case "photo":
            fields = {"photo": [{**ids, "width": sent.width, "height": sent.height, **size}]}
        case "voice":
            fields = {"voice": {**ids, "duration": 1, "mime_type": sent.content_type, **size}}
        case "audio":
            fields = {"audio": {**named, "duration": 1}}
        case "video" | "animation":
            fields = {kind: {**named, "width": 640, "height": 360, "duration": 1}}
        case _:
            fields = {"document": named}
    if sent.caption:
        fields["caption"] = sent.caption
    if sent.caption_entities:
        fields["caption_entities"] = msgspec.to_builtins(sent.caption_entities)
    if sent.media_group is not None:
        fields["media_group_id"] = sent.media_group
    return fields


_NOT_ATTACHED: Final = (
    "Bad Request: the test kit serves album files as attach:// uploads, not file_ids or URLs"
)
