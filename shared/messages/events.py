"""Lifecycle facts on `sc.evt.<name>` (stream SC_EVENTS), for observers and metrics."""

from datetime import datetime
from typing import Literal

import msgspec

from shared.ids import CallIdField, ConvIdField, SessionIdField, TurnIdField
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
    duration_s: float = 0.0  # from asking to the answer, retries included; 0: not measured


class TurnEnded(BusMessage, frozen=True, kw_only=True, tag="turn_ended"):
    """A turn's end and how long it took, on `sc.evt.turn.<conv>`, for metrics."""

    conversation_id: ConvIdField
    session_id: SessionIdField
    turn_id: TurnIdField
    outcome: Literal["answered", "cancelled", "failed"]
    duration_s: float  # from its start (or its resumption by a new owner) to its end
    at: datetime


class ToolEnded(BusMessage, frozen=True, kw_only=True, tag="tool_ended"):
    """A tool call's end and how long it ran, on `sc.evt.tool.<conv>`, for metrics."""

    conversation_id: ConvIdField
    session_id: SessionIdField
    call_id: CallIdField
    tool: str
    outcome: Literal["succeeded", "failed"]
    duration_s: float


Event = BadMessage | DeadLettered | ModelUsed | TurnEnded | ToolEnded
EVENT: msgspec.json.Decoder[Event] = msgspec.json.Decoder(Event)
