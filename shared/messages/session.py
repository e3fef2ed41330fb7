"""Session inputs on `sc.sess.<session>` (stream SC_SESS), stamped by the conversation service."""

import msgspec

from shared.ids import SessionIdField
from shared.messages.contract import BusMessage, Value, Workspace
from shared.messages.inbound import MessageReceived


class ConversationSettings(Value, frozen=True, kw_only=True):
    """The conversation's settings at the time of the input, so no other service reads sc_conv."""

    model: str  # a `[models.<name>]` config name
    workspace: Workspace


class HandleMessage(BusMessage, frozen=True, kw_only=True, tag="handle_message"):
    """Take one user message into the session (a new turn, or a follow-up of the running one)."""

    session_id: SessionIdField
    input_seq: int  # the SC_IN sequence of the message: the dedupe key of every later step
    message: MessageReceived
    settings: ConversationSettings


class WakeSession(BusMessage, frozen=True, kw_only=True, tag="wake_session"):
    """The session has input in SC_SESS: whoever takes its lease reads it from its cursor."""

    session_id: SessionIdField


WAKE: msgspec.json.Decoder[WakeSession] = msgspec.json.Decoder(WakeSession)
SessionInput = HandleMessage
SESSION_INPUT: msgspec.json.Decoder[SessionInput] = msgspec.json.Decoder(SessionInput)
