"""Lifecycle facts on `sc.evt.<name>` (stream SC_EVENTS), for observers and metrics."""

import msgspec

from shared.messages.contract import BusMessage


class BadMessage(BusMessage, frozen=True, kw_only=True, tag="bad_message"):
    """A message that could not be decoded or was refused; it was terminated, never retried."""

    service: str
    subject: str
    stream_seq: int
    reason: str


Event = BadMessage
EVENT: msgspec.json.Decoder[Event] = msgspec.json.Decoder(Event)
