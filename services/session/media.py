"""Attachments as one model call gets them (SPEC §8.2): inline, or a one-line note in their place.

Every call decides afresh, per model, from the history as stored (which keeps only references):
a fallback model that takes less gets notes where the first model got the files. `decide` is the
table of SPEC §8.2; `for_model` reads the accepted files (newest first, so the oldest are the ones
over the limits of 20 images and 30 MiB) through a `MediaReader`, images already fitted.
"""

from collections.abc import Iterable
from typing import Literal, Protocol

import msgspec

from services.session.providers.protocol import InlineMedia, MediaNote, MediaPart, ModelRequest
from shared.messages.contract import Attachment
from shared.messages.history import HistoryEvent, ToolResults, UserMessage
from shared.model_config import ModelConfig

MAX_IMAGES = 20
MAX_INLINE_BYTES = 30 * 1024 * 1024
NOTE = (
    "[Attachment not shown to the model: {path} | name: {name} | type: {type} | reason: {reason}]"
)
TOO_MANY_IMAGES = f"more than {MAX_IMAGES} images in the request"
TOO_MANY_BYTES = "request over 30 MiB"
PDF = "application/pdf"
Kind = Literal["image", "document", "audio", "file"]


class MediaUnavailableError(Exception):
    """A file cannot be read: `why` ends the note's `download failed: …` reason."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


class MediaReader(Protocol):
    """Where the bytes come from (`media_store.MediaStore`: sc_files behind a disk cache)."""

    async def original(self, attachment: Attachment) -> bytes:
        """The file as stored; MediaUnavailableError when it cannot be had."""
        ...

    async def image(self, attachment: Attachment, max_px: int) -> tuple[str, bytes]:
        """The image fitted to `max_px` (`image_fit.fitted`): its media type and bytes."""
        ...


class Refused(msgspec.Struct, frozen=True, kw_only=True):
    """An attachment the model is not shown, and why (a reason of SPEC §8.2)."""

    reason: str


def key(attachment: Attachment) -> str:
    """The attachment's key in `ModelRequest.media`."""
    return attachment.object_name or attachment.path


def note(attachment: Attachment, reason: str) -> MediaNote:
    """The one-line downgrade note of SPEC §8.2."""
    text = NOTE.format(
        path=attachment.path,
        name=attachment.file_name,
        type=attachment.media_type,
        reason=reason,
    )
    return MediaNote(text=text)


def decide(attachment: Attachment, model: ModelConfig) -> Kind | Refused:
    """How the model can take the file, by SPEC §8.2's table, or why it cannot."""
    media_type = attachment.media_type.lower()
    if not attachment.object_name:  # a stored file's error (not placed) is on its line only
        return Refused(reason=f"download failed: {attachment.error or 'the file was not stored'}")
    family = media_type.partition("/")[0]
    if family == "image":
        return _typed(model, "image_in", "image", media_type in model.media.image_types, media_type)
    if media_type == PDF:
        return "document" if model.can("pdf_in") else _not_taken("PDF")
    if family == "audio":
        if model.provider == "anthropic":  # the Messages API takes no audio
            return _not_taken("audio")
        is_listed = media_type in model.media.audio_types
        return _typed(model, "audio_in", "audio", is_listed, media_type)
    if family == "video":
        return _not_taken("video")  # never inline (SPEC §8.1)
    if not model.can("file_in"):
        return _not_taken("file")
    if model.provider == "anthropic" and family != "text":  # documents are PDF or plain text
        return Refused(reason=f"media type {media_type} not accepted by the model")
    return "file"


def _typed(
    model: ModelConfig,
    capability: Literal["image_in", "audio_in"],
    kind: Literal["image", "audio"],
    is_listed: bool,
    media_type: str,
) -> Kind | Refused:
    if not model.can(capability):
        return _not_taken(kind)
    return (
        kind if is_listed else Refused(reason=f"media type {media_type} not accepted by the model")
    )


def _not_taken(kind: str) -> Refused:
    return Refused(reason=f"the model does not accept {kind} input")


def attachments_of(history: Iterable[HistoryEvent]) -> list[Attachment]:
    """Every attachment of the history's user messages and tool results (the files `image_load`
    and its kind loaded, SPEC §8.3), oldest first, each once."""
    found: dict[str, Attachment] = {}
    for event in history:
        if isinstance(event, UserMessage):
            for attachment in event.attachments:
                found.setdefault(key(attachment), attachment)
        elif isinstance(event, ToolResults):
            for result in event.results:
                for attachment in result.attachments:
                    found.setdefault(key(attachment), attachment)
    return list(found.values())


class Budget:
    """What is left of one request's inline allowance, spent newest file first."""

    def __init__(self) -> None:
        self.images = MAX_IMAGES
        self.bytes = MAX_INLINE_BYTES

    def refusal(self, kind: Kind, size: int) -> Refused | None:
        """Why a file of `kind` and `size` bytes no longer fits, or None."""
        if kind == "image" and self.images <= 0:
            return Refused(reason=TOO_MANY_IMAGES)
        if size > self.bytes:
            return Refused(reason=TOO_MANY_BYTES)
        return None

    def spend(self, kind: Kind, size: int) -> None:
        self.bytes -= size
        if kind == "image":
            self.images -= 1


async def for_model(
    model: ModelConfig, request: ModelRequest, reader: MediaReader | None
) -> ModelRequest:
    """The request with `media` set for `model`: a MediaPart for every attachment of its history.

    Without a reader (nothing to read files with) the request goes as it is.
    """
    attachments = attachments_of(request.history)
    if reader is None or not attachments:
        return request
    budget = Budget()
    parts: dict[str, MediaPart] = {}
    for attachment in reversed(attachments):  # newest first: the oldest go over the limits
        parts[key(attachment)] = await _part(model, attachment, reader, budget)
    ordered = {key(a): parts[key(a)] for a in attachments}
    return msgspec.structs.replace(request, media=ordered)


async def _part(
    model: ModelConfig, attachment: Attachment, reader: MediaReader, budget: Budget
) -> MediaPart:
    decided = decide(attachment, model)
    if isinstance(decided, Refused):
        return note(attachment, decided.reason)
    # What cannot fit whatever the bytes turn out to be is not even read.
    early = budget.refusal(decided, 0 if decided == "image" else attachment.size)
    if early is not None:
        return note(attachment, early.reason)
    try:
        if decided == "image":
            media_type, data = await reader.image(attachment, model.media.max_image_px)
        else:
            media_type, data = attachment.media_type, await reader.original(attachment)
    except MediaUnavailableError as exc:
        return note(attachment, f"download failed: {exc.why}")
    refused = budget.refusal(decided, len(data))
    if refused is not None:
        return note(attachment, refused.reason)
    budget.spend(decided, len(data))
    return InlineMedia(
        kind=decided, media_type=media_type, file_name=attachment.file_name, data=data
    )
