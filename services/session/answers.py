"""A turn's answer on its way out, and as history keeps it.

Nothing over MAX_TEXT_BYTES travels in one bus message (SPEC §12.7): a longer answer is stored in
`sc_files` and the output names it. History events are never spilled: an answer that long is kept
in history cut in the middle (the user still gets all of it).
"""

import msgspec

from shared import bus, redaction, subjects
from shared.ids import TurnId
from shared.messages.contract import Chat
from shared.messages.history import ToolResult
from shared.messages.outbound import MAX_TEXT_BYTES, SendFile, SendReply

HISTORY_MARKER = "…[{omitted} chars omitted from the history; the user received all of it]…"


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
    for result in results:
        for number, offered in enumerate(result.sends):
            out_id = subjects.file_out_id(turn_id, result.call_id, number)
            output = SendFile(
                chat=chat,
                out_id=out_id,
                file=offered.attachment,
                caption=offered.caption,
                send_as=offered.send_as,
                turn_id=turn_id,
            )
            await bus.publish(conn, subject, output, msg_id=out_id)


def for_history(text: str, max_bytes: int = MAX_TEXT_BYTES) -> str:
    """The text, cut in the middle until its JSON form fits `max_bytes`."""
    if len(text) * 6 <= max_bytes:  # no character takes more than 6 bytes in JSON
        return text
    while len(msgspec.json.encode(text)) > max_bytes:
        keep = len(text) * max_bytes // len(msgspec.json.encode(text)) // 2 - len(HISTORY_MARKER)
        omitted = len(text) - 2 * keep
        text = text[:keep] + HISTORY_MARKER.format(omitted=omitted) + text[len(text) - keep :]
    return text
