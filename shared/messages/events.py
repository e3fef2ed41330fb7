"""Lifecycle facts on `sc.evt.<name>` (stream SC_EVENTS), for observers and metrics."""

from datetime import datetime

import msgspec

from shared.ids import ConvIdField, SessionIdField, TurnIdField
from shared.messages.contract import BusMessage
from shared.messages.history import Usage


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


class ModelUsed(BusMessage, frozen=True, kw_only=True, tag="model_used"):
    """One model call's tokens and cost (SPEC §7.5), on `sc.evt.usage.<conv>`."""

    conversation_id: ConvIdField
    session_id: SessionIdField
    turn_id: TurnIdField
    model: str  # the `[models.<name>]` that answered
    usage: Usage
    at: datetime


Event = BadMessage | DeadLettered | ModelUsed
EVENT: msgspec.json.Decoder[Event] = msgspec.json.Decoder(Event)
