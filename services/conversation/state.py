"""Conversation state (KV `sc_conv/<conv>`, SPEC §2.1) and the pure rules that change it."""

from collections.abc import Mapping
from datetime import datetime

import msgspec

from services.conversation.albums import Album
from shared.ids import ConversationId, SessionId
from shared.messages.contract import Chat, RemoteSetting, Workspace
from shared.messages.session import ConversationSettings
from shared.sandbox import SandboxMode, SandboxSetting
from shared.tools_config import RemoteConfig, remote_pool

LOCAL_POOL = "local"
# Each channel's conversation ids (SPEC §1), so a channel can only speak for its own conversations.
CONVERSATION_PREFIXES = {"telegram": "tg_", "cli": "cli_"}


class ConversationState(msgspec.Struct, frozen=True, kw_only=True):
    """What the conversation service keeps about one conversation; only it reads and writes it."""

    conversation_id: ConversationId
    chat: Chat
    title: str
    model: str
    reasoning: str = ""  # `/reasoning`: an effort level, "" = the model's default
    sandbox: SandboxMode | None = None  # `/sandbox`; None: the server's `sandbox.mode`
    remote: RemoteSetting = RemoteSetting()  # `/remote` (SPEC §6.6)
    workspace: Workspace
    foreground: SessionId
    session_counter: int = 1
    new_session_seq: int = 0  # the SC_IN sequence of the last `/new` applied
    messages: int = 0
    created_at: datetime
    last_message_at: datetime
    album: Album | None = None  # album parts waiting for quiet (SPEC §12.3)
    removed: bool = False  # ended (rejected, the bot left): the next message starts afresh


STATE: msgspec.json.Decoder[ConversationState] = msgspec.json.Decoder(ConversationState)


def is_published_by_its_channel(chat: Chat, subject: str) -> bool:
    """Is the message on its own channel's subject (`….<channel>.<conv>`) with an id of that
    channel? The bus lets the `chat` login publish only `sc.in.cli.*`; this keeps it there."""
    *_, channel, conv = subject.split(".")
    prefix = CONVERSATION_PREFIXES[chat.channel]
    return conv == chat.conversation_id and channel == chat.channel and conv.startswith(prefix)


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


def restarted(state: ConversationState, chat: Chat, title: str, now: datetime) -> ConversationState:
    """A removed conversation's next authorized message: a fresh conversation that goes on
    counting sessions (so no old session's history is taken up again) and keeps its model."""
    fresh = new_state(chat, title, state.model, now)
    counter = state.session_counter + 1
    return msgspec.structs.replace(
        fresh,
        foreground=foreground_session(state.conversation_id, counter),
        session_counter=counter,
    )


def removed(state: ConversationState) -> ConversationState:
    return msgspec.structs.replace(state, removed=True, album=None)


def received(state: ConversationState, chat: Chat, now: datetime) -> ConversationState:
    """The state after one more message (the chat's details may have changed)."""
    return msgspec.structs.replace(
        state, chat=chat, messages=state.messages + 1, last_message_at=now
    )


def with_model(state: ConversationState, model: str) -> ConversationState:
    return msgspec.structs.replace(state, model=model)


def with_reasoning(state: ConversationState, effort: str) -> ConversationState:
    return msgspec.structs.replace(state, reasoning=effort)


def with_sandbox(state: ConversationState, mode: SandboxMode | None) -> ConversationState:
    return msgspec.structs.replace(state, sandbox=mode)


def with_new_session(state: ConversationState, in_seq: int) -> ConversationState:
    """`/new` (SPEC §12.4): the next foreground session. Applied once per inbound message, so a
    redelivered `/new` (the same `in_seq`) finds it done and changes nothing."""
    if state.new_session_seq == in_seq:
        return state
    counter = state.session_counter + 1
    return msgspec.structs.replace(
        state,
        foreground=foreground_session(state.conversation_id, counter),
        session_counter=counter,
        new_session_seq=in_seq,
    )


def replaced_session(state: ConversationState) -> SessionId:
    """The foreground session that the last `/new` replaced."""
    return foreground_session(state.conversation_id, state.session_counter - 1)


def sandbox_setting(state: ConversationState, server_default: SandboxSetting) -> SandboxSetting:
    """The conversation's own mode, else the server's (which may be `auto`: runners resolve it)."""
    return state.sandbox or server_default


def settings(
    state: ConversationState, server_sandbox: SandboxSetting, remotes: Mapping[str, RemoteConfig]
) -> ConversationSettings:
    """The snapshot stamped into every session input; `server_sandbox` is `sandbox.mode`. In
    fixed remote mode the workspace is the remote's (pool `ssh_<name>`, its root there)."""
    remote = state.remote
    workspace = state.workspace
    found = remotes.get(remote.name) if remote.mode == "fixed" else None
    if found is not None:
        workspace = msgspec.structs.replace(
            workspace,
            pool=remote_pool(remote.name),
            remote=remote.name,
            remote_root=remote.path or found.root,
        )
    elif remote.mode == "fixed":  # its remote left the config: back to local
        remote = RemoteSetting()
    return ConversationSettings(
        model=state.model,
        reasoning=state.reasoning,
        workspace=workspace,
        sandbox=sandbox_setting(state, server_sandbox),
        remote=remote,
    )


def with_remote(state: ConversationState, remote: RemoteSetting) -> ConversationState:
    return msgspec.structs.replace(state, remote=remote)
