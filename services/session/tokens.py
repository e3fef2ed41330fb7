"""Token estimates without a tokenizer (SPEC §4.1), for the compaction threshold and `/status`.

Text is `ceil(ascii_chars / chars_per_token) + non_ascii_chars`; each message adds 4 (a user
message, a notice, the summary of a compaction, an assistant message with its calls, each tool
result, the request-only notice; the system prompt counts as its text alone); each tool schema
`ceil(len(schema JSON) / 4) + 8`; media by kind. What a request holds is counted as the model
reads it: user text with its `Attachments:` lines, and each attachment as `ModelRequest.media`
has it for this call. An attachment without a part there (the request is not normalized yet) is
counted as SPEC §8.2 would send it to this model, its size unknown.

`estimate` anchors on the provider's own count when the last model call reported one, and
scales what it adds by the session's `Calibration`.
"""

import math
import re
import struct
from collections.abc import Mapping, Sequence
from typing import assert_never

import msgspec

from services.session import media as attachments
from services.session.providers.content_parts import user_text
from services.session.providers.protocol import InlineMedia, MediaNote, MediaPart, ModelRequest
from shared.messages.contract import Attachment
from shared.messages.history import (
    AssistantMessage,
    Compacted,
    HistoryEvent,
    Notice,
    SessionStarted,
    ToolResults,
    TurnFinished,
    TurnStarted,
    UserMessage,
)
from shared.messages.tools import ToolSpec
from shared.model_config import ModelConfig

Media = Mapping[str, MediaPart]
PER_MESSAGE = 4
PER_TOOL = 8
SCHEMA_CHARS_PER_TOKEN = 4
IMAGE_MAX = 1_600  # also the figure for an image of unknown size
IMAGE_PIXELS_PER_TOKEN = 750
PDF_PER_PAGE = 1_500
PDF_UNKNOWN = 3_000
AUDIO = 4_000
PDF_PAGE = re.compile(rb"/Type\s*/Page(?!s)")
# JPEG start-of-frame markers: they carry the size (C4, C8 and CC are other segments).
JPEG_FRAMES = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
JPEG_STANDALONE = frozenset(range(0xD0, 0xDA)) | {0x01}  # markers without a length

RATIO_MIN = 0.25
RATIO_MAX = 4.0
FAST_ALPHA = 0.35  # the first FAST_SAMPLES samples move the ratio quickly
SLOW_ALPHA = 0.15
FAST_SAMPLES = 5


# --- text, messages, tools ----------------------------------------------------------------------


def text_tokens(text: str, chars_per_token: float = 4.0) -> int:
    """`ceil(ascii_chars / chars_per_token) + non_ascii_chars`."""
    if text.isascii():
        return math.ceil(len(text) / chars_per_token)
    ascii_chars = len(text.encode("ascii", "ignore"))  # C speed: drops every non-ASCII char
    return math.ceil(ascii_chars / chars_per_token) + len(text) - ascii_chars


def tool_tokens(tool: ToolSpec) -> int:
    """`ceil(len(schema JSON) / 4) + 8`; the schema JSON is the compact object of the tool's
    name, description and parameters, its length in UTF-8 bytes."""
    schema = msgspec.json.encode(
        {"name": tool.name, "description": tool.description, "parameters": tool.parameters}
    )
    return math.ceil(len(schema) / SCHEMA_CHARS_PER_TOKEN) + PER_TOOL


def event_tokens(event: HistoryEvent, model: ModelConfig, media: Media) -> int:
    """One history event as the model reads it; bookkeeping events are not sent and count 0."""
    per = model.chars_per_token
    match event:
        case UserMessage():
            files = sum(attachment_tokens(a, model, media) for a in event.attachments)
            return PER_MESSAGE + text_tokens(user_text(event), per) + files
        case AssistantMessage():
            calls = sum(
                text_tokens(call.name, per) + text_tokens(call.arguments, per)
                for call in event.tool_calls
            )
            return PER_MESSAGE + text_tokens(event.text, per) + calls
        case ToolResults():
            return sum(
                PER_MESSAGE
                + text_tokens(result.content, per)
                + sum(attachment_tokens(a, model, media) for a in result.attachments)
                for result in event.results
            )
        case Notice() | Compacted():
            return PER_MESSAGE + text_tokens(event.text, per)
        case SessionStarted() | TurnStarted() | TurnFinished():
            return 0
        case unhandled:
            assert_never(unhandled)


def request_tokens(request: ModelRequest, model: ModelConfig) -> int:
    """The whole request: system prompt, tool schemas, every event and the request-only notice."""
    per = model.chars_per_token
    return (
        text_tokens(request.system_prompt, per)
        + sum(tool_tokens(tool) for tool in request.tools)
        + _events_tokens(request.history, model, request.media)
        + _notice_tokens(request.notice, model)
    )


def _events_tokens(events: Sequence[HistoryEvent], model: ModelConfig, media: Media) -> int:
    return sum(event_tokens(event, model, media) for event in events)


def _notice_tokens(notice: str | None, model: ModelConfig) -> int:
    return 0 if notice is None else PER_MESSAGE + text_tokens(notice, model.chars_per_token)


# --- media --------------------------------------------------------------------------------------


def attachment_tokens(attachment: Attachment, model: ModelConfig, media: Media) -> int:
    """One attachment: its part in `media`, else what SPEC §8.2 would make of it for `model`."""
    part = media.get(attachments.key(attachment))
    if part is not None:
        return part_tokens(part, attachment, model)
    decided = attachments.decide(attachment, model)
    match decided:
        case attachments.Refused():
            note = attachments.note(attachment, decided.reason)
            return text_tokens(note.text, model.chars_per_token)
        case "image":
            return IMAGE_MAX
        case "document":
            return PDF_UNKNOWN
        case "audio":
            return AUDIO
        case "file":
            return math.ceil(attachment.size / model.chars_per_token)
        case unhandled:
            assert_never(unhandled)


def part_tokens(part: MediaPart, attachment: Attachment, model: ModelConfig) -> int:
    """A media part as sent: a note as its text; an image by its pixels, a PDF by its pages,
    audio per file; another file as text of its size (what the APIs extract from it)."""
    if isinstance(part, MediaNote):
        return text_tokens(part.text, model.chars_per_token)
    if part.kind == "image":
        return image_tokens(image_size(part.data))
    if part.kind == "document":
        return pdf_tokens(part)
    if part.kind == "audio":
        return AUDIO
    return math.ceil(attachment.size / model.chars_per_token)


def image_tokens(size: tuple[int, int] | None) -> int:
    """`min(1600, ceil(width * height / 750))`; 1,600 when the size is unknown."""
    if size is None:
        return IMAGE_MAX
    width, height = size
    return min(IMAGE_MAX, math.ceil(width * height / IMAGE_PIXELS_PER_TOKEN))


def pdf_tokens(part: InlineMedia) -> int:
    """1,500 per page; 3,000 when the pages cannot be counted (no bytes: a Files API id)."""
    pages = pdf_pages(part.data)
    return PDF_UNKNOWN if pages == 0 else pages * PDF_PER_PAGE


def pdf_pages(data: bytes) -> int:
    """The `/Type /Page` objects of a PDF (not `/Pages`, the page tree's nodes); 0: unknown.

    Pages inside compressed object streams are not seen, which only makes the count 0."""
    return len(PDF_PAGE.findall(data))


def image_size(data: bytes) -> tuple[int, int] | None:
    """Width and height from a PNG, GIF, WebP or JPEG header; None for anything else."""
    if data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) >= 24:
        return _positive(struct.unpack(">II", data[16:24]))
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        return _positive(struct.unpack("<HH", data[6:10]))
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return _webp_size(data)
    if data.startswith(b"\xff\xd8"):
        return _jpeg_size(data)
    return None


def _positive(size: tuple[int, int]) -> tuple[int, int] | None:
    width, height = size
    return (width, height) if width > 0 and height > 0 else None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8 " and len(data) >= 30 and data[23:26] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", data[26:30])
        return _positive((width & 0x3FFF, height & 0x3FFF))
    if chunk == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:
        bits = int.from_bytes(data[21:25], "little")
        return ((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
    if chunk == b"VP8X" and len(data) >= 30:
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return (width, height)
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """Walk the segments to the first start-of-frame, which holds height then width."""
    at = 2
    while at + 4 <= len(data):
        if data[at] != 0xFF:
            return None
        marker = data[at + 1]
        if marker == 0xFF:  # a fill byte before the marker
            at += 1
            continue
        if marker in JPEG_STANDALONE:
            at += 2
            continue
        if marker in JPEG_FRAMES and at + 9 <= len(data):
            height, width = struct.unpack(">HH", data[at + 5 : at + 9])
            return _positive((width, height))
        at += 2 + int.from_bytes(data[at + 2 : at + 4], "big")
    return None


# --- anchoring and calibration ------------------------------------------------------------------


class Calibration(msgspec.Struct, frozen=True, kw_only=True):
    """How the provider's counts compare to ours, per session and model (kept in its head)."""

    ratio: float = 1.0
    samples: int = 0

    def updated(self, reported: int, estimated: int) -> "Calibration":
        """After a call that reported `reported` input tokens for a request estimated at
        `estimated` (`request_tokens`, unscaled): the EMA of `reported / estimated`, alpha 0.35 for
        the first 5 samples then 0.15, clamped to [0.25, 4.0]. A count ≤ 0 teaches nothing."""
        if reported <= 0 or estimated <= 0:
            return self
        alpha = FAST_ALPHA if self.samples < FAST_SAMPLES else SLOW_ALPHA
        ratio = self.ratio + alpha * (reported / estimated - self.ratio)
        return Calibration(ratio=min(RATIO_MAX, max(RATIO_MIN, ratio)), samples=self.samples + 1)


class Estimate(msgspec.Struct, frozen=True, kw_only=True):
    tokens: int
    is_reported: bool  # anchored on the provider's count (`/status`: `reported`, else `≈`)


def estimate(request: ModelRequest, model: ModelConfig, calibration: Calibration) -> Estimate:
    """The request's tokens (SPEC §4.1). When the last assistant message of the history reported
    usage: that call's input (fresh, cached and cache-written) and output, plus everything after
    it scaled by the ratio; otherwise the whole request scaled by the ratio.

    A compaction after that message makes its count stale, so it is no anchor then (a history
    that puts the compaction's tail after the `Compacted` event must not pass the tail's calls).
    """
    history = request.history
    anchor = _anchor(history)
    if anchor is None:
        return Estimate(
            tokens=round(request_tokens(request, model) * calibration.ratio), is_reported=False
        )
    at, message = anchor
    usage = message.usage
    since = _events_tokens(history[at + 1 :], model, request.media)
    since += _notice_tokens(request.notice, model)
    reported = usage.input + usage.cache_read + usage.cache_write + usage.output
    return Estimate(tokens=reported + round(since * calibration.ratio), is_reported=True)


def _anchor(history: Sequence[HistoryEvent]) -> tuple[int, AssistantMessage] | None:
    for at in range(len(history) - 1, -1, -1):
        event = history[at]
        if isinstance(event, Compacted):
            return None
        if isinstance(event, AssistantMessage):
            usage = event.usage
            has_input = usage.input + usage.cache_read + usage.cache_write > 0
            return (at, event) if has_input else None
    return None
