"""A turn's answer and the files its tool calls offer on their way out, and the answer as
history keeps it.

Nothing over MAX_TEXT_BYTES travels in one bus message (SPEC §12.7): a longer answer is stored in
`sc_files` and the output names it. History events are never spilled: an answer that long is kept
in history cut in the middle (the user still gets all of it).
"""

import itertools
from typing import Final

import msgspec

from shared import bus, redaction, subjects
from shared.ids import TurnId
from shared.messages.contract import Chat
from shared.messages.history import ToolResult
from shared.messages.outbound import MAX_TEXT_BYTES, SendFile, SendReply
from shared.messages.tools import FileToSend

HISTORY_MARKER = "…[{omitted} chars omitted from the history; the user received all of it]…"
# What Telegram takes as a photo, as delivery decides it (SPEC §12.8), and the most in an album.
PHOTO_TYPES: Final = frozenset({"image/jpeg", "image/png", "image/webp"})
MAX_PHOTO_BYTES: Final = 10 << 20
MAX_ALBUM: Final = 10


async def publish(conn: bus.Connection, reply: SendReply) -> None:
    """Publish the answer (scrubbed of secrets), its text stored aside when it is too long."""
    conv = reply.chat.conversation_id
    if len(reply.text) * 4 > MAX_TEXT_BYTES:  # it may not fit (UTF-8 takes <= 4 bytes a char)
        data = redaction.scrub(reply.text, conn.secrets).encode()  # publish scrubs only the bus
        if len(data) > MAX_TEXT_BYTES:
            name = subjects.file_key(conv, subjects.answer_file(reply.turn_id or reply.out_id))
            store = await conn.js.object_store(subjects.FILES_STORE)
            await store.put(name, data)
            reply = msgspec.structs.replace(reply, text="", text_file=name)
    subject = subjects.outbound(reply.chat.channel, conv)
    await bus.publish(conn, subject, reply, msg_id=reply.out_id)


async def offer_files(
    conn: bus.Connection, chat: Chat, turn_id: TurnId, results: list[ToolResult]
) -> None:
    """Put the files the results offer on the chat's outputs, in order; a repeat (a takeover
    storing the same results) is dropped by msg id."""
    subject = subjects.outbound(chat.channel, chat.conversation_id)
    for output in file_outputs(chat, turn_id, results):
        await bus.publish(conn, subject, output, msg_id=output.out_id)


def file_outputs(chat: Chat, turn_id: TurnId, results: list[ToolResult]) -> list[SendFile]:
    """One output per offered file, except that two or more photos of one call to a Telegram
    chat go as albums of 2-10 (SPEC §12.8). An album takes the out id of its first file and the
    place of its first file among the call's outputs."""
    outputs: list[SendFile] = []
    for result in results:
        sends = result.sends
        photos = [n for n, offered in enumerate(sends) if is_photo(offered)]
        if chat.channel != "telegram" or len(photos) < 2:  # the CLI shows files one by one
            photos = []
        groups = [[n] for n in range(len(sends)) if n not in photos] + albums(photos)
        for group in sorted(groups):
            first = sends[group[0]]
            output = SendFile(
                chat=chat,
                out_id=subjects.file_out_id(turn_id, result.call_id, group[0]),
                file=first.attachment,
                caption=first.caption,
                send_as=first.send_as,
                turn_id=turn_id,
                more=[sends[n] for n in group[1:]],
            )
            outputs.append(output)
    return outputs


def is_photo(offered: FileToSend) -> bool:
    """Whether delivery sends the file as a photo, as far as it shows without its bytes (delivery
    still sends an image it cannot read, or one past Telegram's sides, as a document)."""
    file = offered.attachment
    is_image = file.media_type.lower() in PHOTO_TYPES and file.size <= MAX_PHOTO_BYTES
    return offered.send_as in ("auto", "photo") and is_image


def albums(numbers: list[int]) -> list[list[int]]:
    """`numbers` cut in order into the fewest albums of at most MAX_ALBUM, as even as can be: 11
    photos make albums of 6 and 5, never 10 and a lone photo."""
    count = -(-len(numbers) // MAX_ALBUM)
    if not count:
        return []
    size, extra = divmod(len(numbers), count)
    cuts = [k * size + min(k, extra) for k in range(count + 1)]
    return [numbers[start:end] for start, end in itertools.pairwise(cuts)]


def for_history(text: str, max_bytes: int = MAX_TEXT_BYTES) -> str:
    """The text, cut in the middle until its JSON form fits `max_bytes`."""
    if len(text) * 6 <= max_bytes:  # no character takes more than 6 bytes in JSON
        return text
    while len(msgspec.json.encode(text)) > max_bytes:
        keep = len(text) * max_bytes // len(msgspec.json.encode(text)) // 2 - len(HISTORY_MARKER)
        omitted = len(text) - 2 * keep
        text = text[:keep] + HISTORY_MARKER.format(omitted=omitted) + text[len(text) - keep :]
    return text
