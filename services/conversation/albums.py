"""Albums (SPEC §12.3): Telegram sends each photo of an album as its own message with the same
`media_group_id`; conversation keeps the parts in the conversation state and passes them on as
one message after QUIET_S without a new part (DESIGN §4: ingress publishes every part at once).

The album is sealed before it is passed on, so a part arriving after that starts a new album
rather than being lost, and passing one on twice is harmless (its input is stored under the
first part's SC_IN sequence). A marker key `album.<conv>` in sc_conv names the conversations
with an album waiting, so a restarted instance finds them.
"""

from datetime import datetime, timedelta

import msgspec

from shared.messages.inbound import MessageReceived

QUIET_S = 0.9


class Album(msgspec.Struct, frozen=True, kw_only=True):
    """The parts of one album received so far."""

    group: str  # media_group_id
    first_seq: int  # SC_IN sequence of the first part: the merged message's input
    parts: list[MessageReceived]
    last_at: datetime  # when the newest part arrived (this service's clock)
    sealed: bool = False  # being passed on: a later part starts a new album


def marker_key(conversation_id: str) -> str:
    return f"album.{conversation_id}"


def with_part(album: Album | None, part: MessageReceived, in_seq: int, now: datetime) -> Album:
    """`album` with one more part (a sealed album or another group: a new album)."""
    if album is None or album.sealed or album.group != part.media_group_id:
        return Album(group=part.media_group_id, first_seq=in_seq, parts=[part], last_at=now)
    known = {p.platform_message_id for p in album.parts} - {None}
    if part.platform_message_id in known:
        return album  # a redelivered part
    return msgspec.structs.replace(album, parts=[*album.parts, part], last_at=now)


def quiet_left(album: Album, now: datetime) -> float:
    """Seconds until the album has been quiet for QUIET_S (≤ 0: pass it on)."""
    return (album.last_at + timedelta(seconds=QUIET_S) - now).total_seconds()


def merged(album: Album) -> MessageReceived:
    """One message: the parts' texts (captions) in order, all their attachments."""
    first = album.parts[0]
    texts = [part.text for part in album.parts if part.text.strip()]
    attachments = [file for part in album.parts for file in part.attachments]
    return msgspec.structs.replace(
        first, text="\n".join(texts), attachments=attachments, media_group_id=""
    )
