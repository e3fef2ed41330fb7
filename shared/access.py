"""Who the bot serves (SPEC §12.2): the records of KV `sc_auth`, written only by conversation and
watched by ingress, and the one rule both apply.

Keys: `admins` (the admins `/admin_authorize` recorded) and `chat.<chat conv>` (one chat's
access). A forum topic is approved with its group: its key is the group's conversation id.
"""

from collections.abc import Collection
from datetime import datetime
from typing import Literal

import msgspec

from shared.messages.contract import Chat

AccessState = Literal["approved", "pending", "rejected"]
Verdict = Literal["serve", "refuse", "ignore"]


class ChatAccess(msgspec.Struct, frozen=True, kw_only=True):
    """One chat's access: `pending` from the moment its one refusal is sent."""

    chat: Chat  # where the approval notice goes
    title: str  # a group's title or the user's name
    access: AccessState
    since: datetime  # when `access` last changed
    requested_by: int | None = None  # the user whose message asked first


class Admins(msgspec.Struct, frozen=True, kw_only=True):
    """Admins recorded in KV (besides `telegram.admin_user_ids`)."""

    user_ids: list[int] = msgspec.field(default_factory=list)


CHAT_ACCESS: msgspec.json.Decoder[ChatAccess] = msgspec.json.Decoder(ChatAccess)
ADMINS: msgspec.json.Decoder[Admins] = msgspec.json.Decoder(Admins)


def chat_conversation(chat: Chat) -> str:
    """The conversation id a chat's access is kept under: a topic's group's (`tg_<chat>`)."""
    if chat.channel == "telegram" and chat.chat_id is not None:
        return f"tg_{chat.chat_id}"
    return chat.conversation_id


def verdict(
    access: AccessState | None,
    user_id: int | None,
    trusted: Collection[int],
) -> Verdict:
    """Serve a trusted user (allowed or admin) anywhere, and anyone in an approved chat; a
    pending or rejected chat is ignored (its one refusal was sent); anything else is refused."""
    if user_id is not None and user_id in trusted:
        return "serve"
    match access:
        case "approved":
            return "serve"
        case "pending" | "rejected":
            return "ignore"
        case None:
            return "refuse"
