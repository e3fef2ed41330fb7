"""The media parts of each wire format, as the fakes of `llm_api`, `openai_responses_api` and
`anthropic_api` read them (SPEC §7.2): strict where the API is, checked as the API checks them.
"""

import base64
from typing import Literal

import msgspec

ANTHROPIC_IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")


def decoded_data_url(url: str) -> tuple[str, bytes]:
    """`data:<media type>;base64,<data>` → the media type and the bytes (ValueError otherwise)."""
    head, comma, data = url.partition(",")
    if not (head.startswith("data:") and head.endswith(";base64") and comma):
        raise ValueError(f"not a base64 data URL: {url[:40]!r}")
    return head.removeprefix("data:").removesuffix(";base64"), base64.b64decode(data, validate=True)


# --- anthropic: image and document blocks -------------------------------------------------------


class _Strict(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The Messages API refuses fields it does not know."""


class Marker(_Strict, frozen=True, kw_only=True):
    """`cache_control` on a media block (the last block of the last message may be one)."""

    type: Literal["ephemeral"]
    ttl: Literal["5m", "1h"] | None = None


class _Source(_Strict, frozen=True, kw_only=True, tag_field="type"):
    pass


class Base64Source(_Source, frozen=True, kw_only=True, tag="base64"):
    media_type: str
    data: str

    @property
    def decoded(self) -> bytes:
        return base64.b64decode(self.data, validate=True)


class FileSource(_Source, frozen=True, kw_only=True, tag="file"):
    file_id: str


class TextSource(_Source, frozen=True, kw_only=True, tag="text"):
    media_type: Literal["text/plain"]
    data: str


class _Block(_Strict, frozen=True, kw_only=True, tag_field="type"):
    cache_control: Marker | None = None


class ImageBlock(_Block, frozen=True, kw_only=True, tag="image"):
    source: Base64Source | FileSource

    def __post_init__(self) -> None:  # the API's check: a decode error, hence a 400
        if isinstance(self.source, Base64Source):
            if self.source.media_type not in ANTHROPIC_IMAGE_TYPES:
                raise ValueError(f"image media_type {self.source.media_type!r} is not supported")
            base64.b64decode(self.source.data, validate=True)


class DocumentBlock(_Block, frozen=True, kw_only=True, tag="document"):
    source: Base64Source | FileSource | TextSource
    title: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.source, Base64Source) and self.source.media_type != "application/pdf":
            raise ValueError("a base64 document must be application/pdf")


AnthropicMedia = ImageBlock | DocumentBlock


# --- openai_responses: input_image, input_file, input_audio --------------------------------------


class _Part(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    @property
    def text(self) -> str:
        """Empty: a media part has no text (a message's `text` joins its parts' texts)."""
        return ""


class InputImage(_Part, frozen=True, kw_only=True, tag="input_image"):
    detail: Literal["auto", "low", "high"] = "auto"
    image_url: str | None = None
    file_id: str | None = None

    def __post_init__(self) -> None:
        if (self.image_url is None) == (self.file_id is None):
            raise ValueError("input_image takes one of image_url and file_id")
        if self.image_url is not None:
            decoded_data_url(self.image_url)


class InputFile(_Part, frozen=True, kw_only=True, tag="input_file"):
    filename: str | None = None
    file_data: str | None = None
    file_id: str | None = None

    def __post_init__(self) -> None:
        if (self.file_data is None) == (self.file_id is None):
            raise ValueError("input_file takes one of file_data and file_id")
        if self.file_data is not None:
            decoded_data_url(self.file_data)


class AudioData(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    data: str
    format: Literal["wav", "mp3"]


class InputAudio(_Part, frozen=True, kw_only=True, tag="input_audio"):
    input_audio: AudioData


ResponsesMedia = InputImage | InputFile | InputAudio


# --- openai_chat: image_url, file, input_audio ------------------------------------------------


class ImageUrl(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    url: str
    detail: Literal["auto", "low", "high"] | None = None


class ChatFile(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    filename: str
    file_data: str  # a data URL
