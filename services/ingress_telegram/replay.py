"""Replay protection beyond the dedupe window: the newest update each bot published (KV sc_ingress).

SC_IN drops a repeated `tg:<bot>:<update_id>` for ten minutes; after a longer outage Telegram may
offer updates again that were published long ago, and this mark skips them.
"""

from datetime import datetime, timedelta

import msgspec

# Telegram numbers updates upward, but picks the next id at random after a week without updates.
QUIET_RESET = timedelta(days=7)


class PublishedMark(msgspec.Struct, frozen=True, kw_only=True):
    """The newest update published for a bot, and when its message was sent."""

    update_id: int
    sent_at: datetime


MARK: msgspec.json.Decoder[PublishedMark] = msgspec.json.Decoder(PublishedMark)


def encode(mark: PublishedMark) -> bytes:
    return msgspec.json.encode(mark)


def is_replay(mark: PublishedMark | None, update_id: int, sent_at: datetime) -> bool:
    """At or below the mark means published before, unless a quiet week restarted the ids."""
    if mark is None:
        return False
    return update_id <= mark.update_id and sent_at < mark.sent_at + QUIET_RESET
