"""Markdown answers as Telegram messages: plain text plus entities, cut into parts Telegram accepts.

telegramify-markdown renders (`convert`), counting UTF-16 code units as Telegram does; the cutting
and folding are ours (SPEC §12.7). A part ends where a block begins (a paragraph, list item, code
block or quote) when one lies in the second half of its room, else at a line, else at a space, else
between characters; entities are clipped to their part, so a long code block becomes several `pre`
blocks and nothing straddles two messages. Long code blocks and quotes are then folded into
expandable blockquotes. Parts never carry a parse mode, so no character needs escaping.
"""

import bisect
import logging
import re
from itertools import accumulate
from typing import NamedTuple

import msgspec
import telegramify_markdown

from services.delivery.bot_api import MessageEntity

MAX_MESSAGE_UNITS = 4096  # Telegram's limit for one message, in UTF-16 code units
MAX_PARTS = 12  # a runaway answer never floods a chat (SPEC §12.7)
# Markdown enough for MAX_PARTS full parts; more is not rendered (3 MB would take seconds).
HEAD_CHARS = 2 * MAX_PARTS * MAX_MESSAGE_UNITS
CUT_NOTICE = "✂️ The answer was cut here: {about}{left:,} more characters were left out."
DOCUMENT_CAPTION = "The full answer ({chars:,} chars)."
FOLD_CODE_LINES, FOLD_CODE_CHARS = 15, 600  # a code block this long is folded
FOLD_QUOTE_LINES, FOLD_QUOTE_CHARS = 6, 360  # and a quote this long
EXPANDABLE = "expandable_blockquote"
LIST_ITEM = re.compile(r"[ \t]*(?:⦁|\d+\.) ")  # telegramify's list markers start an item's line
log = logging.getLogger(__name__)


def _render_config() -> telegramify_markdown.RenderConfig:
    config = telegramify_markdown.RenderConfig.isolated()
    config.cite_expandable = False  # its rule (> 200 units) is not ours; _folded decides
    return config


RENDER_CONFIG = _render_config()  # never changed after import


class Part(msgspec.Struct, frozen=True, kw_only=True):
    """One message of an answer."""

    text: str
    entities: tuple[MessageEntity, ...] = ()


class Plan(msgspec.Struct, frozen=True, kw_only=True):
    """How an answer goes out: its parts in order, then, when `document`, the whole answer as
    the file `document_name(turn)` captioned `document_caption(answer)`."""

    parts: tuple[Part, ...]
    document: bool = False


class _Cuts(NamedTuple):
    """Where a part may end, as sorted string indices (the start of what follows)."""

    blocks: list[int]  # a paragraph, list item, code block or quote begins
    lines: list[int]  # any line begins


def answer_plan(markdown: str) -> Plan:
    """The parts of an answer; past MAX_PARTS parts, the first MAX_PARTS - 1 and the document."""
    head = markdown[:HEAD_CHARS]
    parts = _render(head, MAX_MESSAGE_UNITS)
    if len(parts) <= MAX_PARTS and len(head) == len(markdown):
        return Plan(parts=tuple(parts))
    return Plan(parts=tuple(parts[: MAX_PARTS - 1]), document=True)


def document_caption(markdown: str) -> str:
    """The caption of the document that carries the whole answer."""
    return DOCUMENT_CAPTION.format(chars=len(markdown))


def document_name(turn_id: str) -> str:
    """The file name of the document that carries the whole answer of turn `turn_id`."""
    return f"answer-{turn_id}.md"


def answer_parts(markdown: str, max_units: int = MAX_MESSAGE_UNITS) -> list[Part]:
    """Render Markdown and split it into at most MAX_PARTS parts of at most `max_units` UTF-16
    code units; past that, the last part says how much was left out."""
    head = markdown[:HEAD_CHARS]
    parts = _render(head, max_units)
    if len(parts) <= MAX_PARTS and len(head) == len(markdown):
        return parts
    kept = parts[: MAX_PARTS - 1]
    shown = sum(len(part.text) for part in kept)
    if len(head) == len(markdown):  # all of it rendered: the count is exact
        left, about = sum(len(part.text) for part in parts) - shown, ""
    else:  # the rest was never rendered: count it in source characters
        rendered = max(1, sum(len(part.text) for part in parts))
        left, about = len(markdown) - len(head) * shown // rendered, "about "
    return [*kept, Part(text=CUT_NOTICE.format(about=about, left=left))]


def _render(markdown: str, max_units: int) -> list[Part]:
    try:
        text, entities = telegramify_markdown.convert(markdown, config=RENDER_CONFIG)
    except Exception:  # a renderer bug must not cost the user the answer
        log.exception(
            "could not render an answer of %d chars; sending it as plain text", len(markdown)
        )
        return plain_parts(markdown, max_units)
    return [_folded(part) for part in _split(text, [_entity(e) for e in entities], max_units)]


def plain_parts(text: str, max_units: int = MAX_MESSAGE_UNITS) -> list[Part]:
    """Text sent as it is, split like an answer."""
    return _split(text, [], max_units)


def _entity(entity: telegramify_markdown.MessageEntity) -> MessageEntity:
    return MessageEntity(
        type=entity.type,
        offset=entity.offset,
        length=entity.length,
        url=entity.url,
        language=entity.language,
        custom_emoji_id=entity.custom_emoji_id,
    )


def _split(text: str, entities: list[MessageEntity], max_units: int) -> list[Part]:
    units = [0, *accumulate(2 if ord(char) > 0xFFFF else 1 for char in text)]
    cuts = _cut_points(text, entities, units)
    parts = []
    start = 0
    while start < len(text):
        end = len(text)
        if units[end] - units[start] > max_units:
            limit = bisect.bisect_right(units, units[start] + max_units) - 1
            end = _cut(text, start, limit, cuts)
        part = _trimmed(text[start:end], _clipped(entities, units[start], units[end]))
        if part is not None:
            parts.append(part)
        start = end
    return parts


def _cut_points(text: str, entities: list[MessageEntity], units: list[int]) -> _Cuts:
    """Every line start; those outside code that begin a block are also block starts."""
    code = sorted(
        (bisect.bisect_left(units, e.offset), bisect.bisect_left(units, e.offset + e.length))
        for e in entities
        if e.type == "pre"
    )
    code_starts = [start for start, _ in code]
    lines = [match.end() for match in re.finditer("\n", text)]
    blocks = []
    for line in lines:
        inside = bisect.bisect_left(code_starts, line) - 1  # the last code block before it
        if inside >= 0 and line < code[inside][1]:
            continue
        if text.startswith("\n\n", line - 2) or LIST_ITEM.match(text, line):
            blocks.append(line)
    return _Cuts(blocks=blocks, lines=lines)


def _cut(text: str, start: int, limit: int, cuts: _Cuts) -> int:
    """Where the part from `start` ends, at `limit` at the latest."""
    half = start + (limit - start) // 2
    block = _last(cuts.blocks, start, limit)
    if block is not None and block >= half:
        return block
    line = _last(cuts.lines, start, limit)
    if line is not None:
        return line
    space = text.rfind(" ", half, limit)
    if space >= 0:
        return space + 1
    return max(limit, start + 1)  # a single character wider than the room still moves on


def _last(points: list[int], start: int, limit: int) -> int | None:
    """The last point after `start` and at most `limit`."""
    index = bisect.bisect_right(points, limit) - 1
    return points[index] if index >= 0 and points[index] > start else None


def _clipped(entities: list[MessageEntity], start: int, stop: int) -> list[MessageEntity]:
    """The entities over units [start, stop), clipped to it and counted from `start`."""
    kept = []
    for entity in entities:
        first = max(entity.offset, start)
        last = min(entity.offset + entity.length, stop)
        if last > first:
            kept.append(msgspec.structs.replace(entity, offset=first - start, length=last - first))
    return kept


def _trimmed(text: str, entities: list[MessageEntity]) -> Part | None:
    """The part without the newlines a cut leaves at its ends; entities shifted and clipped.

    A newline is one UTF-16 unit, so the units removed in front equal the characters removed.
    """
    body = text.strip("\n")
    if not body.strip():
        return None
    lead = len(text) - len(text.lstrip("\n"))
    end = telegramify_markdown.utf16_len(body)
    kept = []
    for entity in entities:
        start = max(entity.offset - lead, 0)
        stop = min(entity.offset + entity.length - lead, end)
        if stop > start:
            kept.append(msgspec.structs.replace(entity, offset=start, length=stop - start))
    return Part(text=body, entities=tuple(kept))


def _folded(part: Part) -> Part:
    """Long code blocks and quotes folded into expandable blockquotes (SPEC §12.7).

    Telegram nests no quote in another, so a quote inside a quote is dropped (its text stays in
    the outer one), and a long code block inside a quote folds that quote instead.
    """
    quotes = _outermost([e for e in part.entities if e.type == "blockquote"])
    code = [
        e
        for e in part.entities
        if e.type == "pre" and _is_long(_covered(part.text, e), FOLD_CODE_LINES, FOLD_CODE_CHARS)
    ]
    entities: list[MessageEntity] = []
    for entity in part.entities:
        if entity.type == "blockquote":
            if any(entity is quote for quote in quotes):
                is_long = _is_long(_covered(part.text, entity), FOLD_QUOTE_LINES, FOLD_QUOTE_CHARS)
                is_long = is_long or any(_contains(entity, block) for block in code)
                entities.append(
                    msgspec.structs.replace(entity, type=EXPANDABLE) if is_long else entity
                )
        elif entity in code and not any(_contains(quote, entity) for quote in quotes):
            entities.append(
                MessageEntity(type=EXPANDABLE, offset=entity.offset, length=entity.length)
            )
            entities.append(entity)
        else:
            entities.append(entity)
    return msgspec.structs.replace(part, entities=tuple(entities))


def _outermost(quotes: list[MessageEntity]) -> list[MessageEntity]:
    """The quotes inside no other quote (of two alike, the first)."""
    kept: list[MessageEntity] = []
    for quote in sorted(quotes, key=lambda e: (e.offset, -e.length)):
        if not kept or not _contains(kept[-1], quote):
            kept.append(quote)
    return kept


def _covered(text: str, entity: MessageEntity) -> str:
    """The text under an entity; offsets count UTF-16 units."""
    encoded = text.encode("utf-16-le", "surrogatepass")
    span = encoded[2 * entity.offset : 2 * (entity.offset + entity.length)]
    return span.decode("utf-16-le", "surrogatepass")


def _is_long(text: str, lines: int, chars: int) -> bool:
    """Whether `text` has at least `lines` lines or `chars` characters."""
    return text.count("\n") + 1 >= lines or len(text) >= chars


def _contains(outer: MessageEntity, inner: MessageEntity) -> bool:
    return (
        outer.offset <= inner.offset and inner.offset + inner.length <= outer.offset + outer.length
    )
