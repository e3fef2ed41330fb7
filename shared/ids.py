"""Typed ids. Every id that appears in a subject or a KV key matches `ID_PATTERN`."""

import secrets
from typing import Annotated, NewType

from msgspec import Meta

ID_PATTERN = r"^[A-Za-z0-9_-]+$"

ConversationId = NewType("ConversationId", str)
SessionId = NewType("SessionId", str)
TurnId = NewType("TurnId", str)
ToolCallId = NewType("ToolCallId", str)
OutId = NewType("OutId", str)

# Field types for Structs: the pattern is checked whenever a message is decoded.
ConvIdField = Annotated[ConversationId, Meta(pattern=ID_PATTERN)]
SessionIdField = Annotated[SessionId, Meta(pattern=ID_PATTERN)]
TurnIdField = Annotated[TurnId, Meta(pattern=ID_PATTERN)]
CallIdField = Annotated[ToolCallId, Meta(pattern=ID_PATTERN)]
OutIdField = Annotated[OutId, Meta(pattern=ID_PATTERN)]


def new_id(prefix: str = "") -> str:
    """A fresh random id, safe for subjects and KV keys."""
    return prefix + secrets.token_hex(8)
