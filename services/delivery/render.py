"""Markdown answers as Telegram messages: plain text plus entities, cut into parts Telegram accepts.

telegramify-markdown renders (`convert`) and splits (`split_entities`, at newlines first, clipping
entities to their part), both counting UTF-16 code units as Telegram does. Parts never carry a
parse mode, so no character of the answer needs escaping.
"""

import logging

import msgspec
import telegramify_markdown

from services.delivery.bot_api import MessageEntity

MAX_MESSAGE_UNITS = 4096  # Telegram's limit for one message, in UTF-16 code units
MAX_PARTS = 12  # a runaway answer never floods a chat (SPEC §12.7)
# Markdown enough for MAX_PARTS full parts; more is not rendered (3 MB would take seconds).
HEAD_CHARS = 2 * MAX_PARTS * MAX_MESSAGE_UNITS
CUT_NOTICE = "✂️ The answer was cut here: {about}{left:,} more characters were left out."
log = logging.getLogger(__name__)


class Part(msgspec.Struct, frozen=True, kw_only=True):
    """One message of an answer."""

    text: str
    entities: tuple[MessageEntity, ...] = ()


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
        text, entities = telegramify_markdown.convert(markdown)
    except Exception:  # a renderer bug must not cost the user the answer
        log.exception(
            "could not render an answer of %d chars; sending it as plain text", len(markdown)
        )
        return plain_parts(markdown, max_units)
    return _split(text, entities, max_units)


def plain_parts(text: str, max_units: int = MAX_MESSAGE_UNITS) -> list[Part]:
    """Text sent as it is, split like an answer."""
    return _split(text, [], max_units)


def _split(
    text: str, entities: list[telegramify_markdown.MessageEntity], max_units: int
) -> list[Part]:
    parts = []
    for chunk, chunk_entities in telegramify_markdown.split_entities(text, entities, max_units):
        part = _trimmed(chunk, [_entity(e) for e in chunk_entities])
        if part is not None:
            parts.append(part)
    return parts


def _entity(entity: telegramify_markdown.MessageEntity) -> MessageEntity:
    return MessageEntity(
        type=entity.type,
        offset=entity.offset,
        length=entity.length,
        url=entity.url,
        language=entity.language,
        custom_emoji_id=entity.custom_emoji_id,
    )


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
