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
    # Fixed remote mode (SPEC §6.6): the SSH remote whose directory `remote_root` is the
    # workspace root; `.stellaclaw/`, `.skill/` and `shared/` stay in `path` on the runner host.
    remote: str = ""
    remote_root: str = ""


RemoteMode = Literal["local", "selectable", "fixed"]


class RemoteSetting(Value, frozen=True, kw_only=True):
    """A conversation's `/remote` (SPEC §6.6): where its tools run."""

    mode: RemoteMode = "local"
    name: str = ""  # fixed: the remote
    path: str = ""  # fixed: its workspace root there (empty: the remote's `root`)


class Attachment(Value, frozen=True, kw_only=True):
    """A file a person sent with a message (SPEC §8.1), kept in `sc_files` under `object_name`.

    Every channel fills it the same way; history keeps the reference and each model call decides
    afresh whether the file goes to the model inline or as a one-line note (SPEC §8.2).
    """

    object_name: str  # in sc_files; "" when the download failed
    file_name: str  # as the person's client named it
    media_type: str  # `image/png`, `application/pdf`, …
    size: int  # bytes
    path: str  # where it is placed in the workspace: `upload/<name>`
    # Why the file is missing: its download failed (`object_name` "", the model reads it in the
    # downgrade note), or it is stored but was not placed in the workspace (on its line).
    error: str = ""
