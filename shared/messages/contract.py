"""The contract every bus message shares: the tagged base, and the values several families nest."""

from typing import Literal

import msgspec

from shared.ids import ConvIdField


class BusMessage(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind"):
    """Base of every bus message: immutable, tagged by `kind`; unknown fields are ignored."""


class Value(msgspec.Struct, frozen=True, kw_only=True):
    """Base of the untagged values nested inside bus messages."""


ChatKind = Literal["private", "group", "topic", "cli"]


class Chat(Value, frozen=True, kw_only=True):
    """Where a conversation lives on its channel; outputs carry it so delivery needs no lookup."""

    conversation_id: ConvIdField
    channel: Literal["telegram", "cli"]
    kind: ChatKind
    chat_id: int | None = None  # the platform's chat id (Telegram); None for bus clients
    thread_id: int | None = None  # a forum topic's message_thread_id


class Sender(Value, frozen=True, kw_only=True):
    """Who wrote a message."""

    user_id: int | None = None
    display_name: str
    username: str | None = None


class Workspace(Value, frozen=True, kw_only=True):
    """The runner pool that holds a conversation's workspace, and its path there.

    A relative path is resolved against the runner's workdir (`workspaces/<conv>`).
    """

    pool: str
    path: str
