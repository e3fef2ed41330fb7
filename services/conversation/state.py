"""Conversation state (KV `sc_conv/<conv>`, SPEC §2.1) and the pure rules that change it."""

from datetime import datetime

import msgspec

from shared.ids import ConversationId, SessionId
from shared.messages.contract import Chat, Workspace
from shared.messages.session import ConversationSettings

LOCAL_POOL = "local"


class ConversationState(msgspec.Struct, frozen=True, kw_only=True):
    """What the conversation service keeps about one conversation; only it reads and writes it."""

    conversation_id: ConversationId
    chat: Chat
    title: str
    model: str
    workspace: Workspace
    foreground: SessionId
    session_counter: int = 1
    messages: int = 0
    created_at: datetime
    last_message_at: datetime


STATE: msgspec.json.Decoder[ConversationState] = msgspec.json.Decoder(ConversationState)


def foreground_session(conversation_id: str, n: int) -> SessionId:
    return SessionId(f"{conversation_id}_fg{n}")


def new_state(chat: Chat, title: str, model: str, now: datetime) -> ConversationState:
    """A conversation created by its first message: the default model, a local workspace."""
    conv = chat.conversation_id
    return ConversationState(
        conversation_id=conv,
        chat=chat,
        title=title,
        model=model,
        workspace=Workspace(pool=LOCAL_POOL, path=f"workspaces/{conv}"),
        foreground=foreground_session(conv, 1),
        created_at=now,
        last_message_at=now,
    )


def received(state: ConversationState, chat: Chat, now: datetime) -> ConversationState:
    """The state after one more message (the chat's details may have changed)."""
    return msgspec.structs.replace(
        state, chat=chat, messages=state.messages + 1, last_message_at=now
    )


def with_model(state: ConversationState, model: str) -> ConversationState:
    return msgspec.structs.replace(state, model=model)


def settings(state: ConversationState) -> ConversationSettings:
    """The snapshot stamped into every session input."""
    return ConversationSettings(model=state.model, workspace=state.workspace)
