"""Lifecycle facts on `sc.evt.<name>` (stream SC_EVENTS), for observers and metrics."""

import msgspec

from shared.messages.contract import BusMessage


class BadMessage(BusMessage, frozen=True, kw_only=True, tag="bad_message"):
    """A message that could not be decoded or was refused; it was terminated, never retried."""

    service: str
    subject: str
    stream_seq: int
    reason: str


class DeadLettered(BusMessage, frozen=True, kw_only=True, tag="dead_letter"):
    """A message whose handling failed `bus.max_deliver` times; it was terminated so its lane
    moves on. The stream still holds it at `stream_seq` for an operator to inspect."""

    service: str
    subject: str
    stream: str
    stream_seq: int
    deliveries: int
    last_error: str


Event = BadMessage | DeadLettered
EVENT: msgspec.json.Decoder[Event] = msgspec.json.Decoder(Event)
