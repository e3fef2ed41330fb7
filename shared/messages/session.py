"""Session inputs on `sc.sess.<session>` (stream SC_SESS), stamped by the conversation service, and
the session's control lane `sc.ctl.sess.<session>` (core: nudges and status queries)."""

from datetime import datetime
from typing import Literal

import msgspec

from shared.ids import SessionIdField
from shared.messages.contract import BusMessage, Chat, RemoteSetting, Value, Workspace
from shared.messages.history import Usage
from shared.messages.inbound import MessageReceived
from shared.sandbox import SandboxSetting


class ConversationSettings(Value, frozen=True, kw_only=True):
    """The conversation's settings at the time of the input, so no other service reads sc_conv."""

    model: str  # a `[models.<name>]` config name
    reasoning: str = ""  # `/reasoning`: an effort level overriding the model's; "" = its own
    workspace: Workspace
    sandbox: SandboxSetting = "auto"  # the conversation's `/sandbox`, else the server default
    remote: RemoteSetting = RemoteSetting()  # `/remote`: the catalog's `remote` argument


class HandleMessage(BusMessage, frozen=True, kw_only=True, tag="handle_message"):
    """Take one user message into the session (a new turn, or a follow-up of the running one)."""

    session_id: SessionIdField
    input_seq: int  # the SC_IN sequence of the message: the dedupe key of every later step
    message: MessageReceived
    settings: ConversationSettings


class CancelTurn(BusMessage, frozen=True, kw_only=True, tag="cancel_turn"):
    """`/cancel` (SPEC §3.6), or `/new` ending the old session's running turn (`reason="new"`:
    nothing is said when nothing runs). Acted on as soon as the actor reads it, ahead of the
    inputs queued before it."""

    session_id: SessionIdField
    input_seq: int
    chat: Chat
    everything: bool = False  # `/cancel all`
    reason: Literal["cancel", "new", "removed"] = "cancel"


class ContinueTurn(BusMessage, frozen=True, kw_only=True, tag="continue_turn"):
    """`/continue` (SPEC §3.7): resume the last turn if it failed recoverably or was cut."""

    session_id: SessionIdField
    input_seq: int
    chat: Chat
    settings: ConversationSettings


class CompactSession(BusMessage, frozen=True, kw_only=True, tag="compact_session"):
    """`/compact` (SPEC §4.4): compact everything but the recent tail now, or when the running
    turn ends."""

    session_id: SessionIdField
    input_seq: int
    chat: Chat
    settings: ConversationSettings


class WakeSession(BusMessage, frozen=True, kw_only=True, tag="wake_session"):
    """The session has input in SC_SESS: whoever takes its lease reads it from its cursor."""

    session_id: SessionIdField
    seq: int = 0  # the SC_SESS sequence of the input (0: a re-wake, read everything)


class NudgeSession(BusMessage, frozen=True, kw_only=True, tag="nudge_session"):
    """Core request: input is waiting in SC_SESS; the live actor reads it at once, so a follow-up
    or a cancel reaches a running turn without waiting for it to end. Every session process
    answers (NudgeTaken); unless one says it holds the actor, a wake follows."""

    session_id: SessionIdField
    seq: int = 0  # the SC_SESS sequence of the input (0: unknown, read until nothing is left)


class NudgeTaken(BusMessage, frozen=True, kw_only=True, tag="nudge_taken"):
    """The answer to a NudgeSession sent as a request: does this process hold the session's
    live actor (which reads the input now, so no wake is needed)?"""

    session_id: SessionIdField
    held: bool


class StatusQuery(BusMessage, frozen=True, kw_only=True, tag="status_query"):
    """Core request: the session's part of `/status`, answered by its live actor or, when none
    is live, by any session instance from `sc_session`."""

    session_id: SessionIdField


SessionState = Literal["new", "idle", "running", "failed", "broken"]


class SessionStatus(BusMessage, frozen=True, kw_only=True, tag="session_status"):
    """The answer to a StatusQuery (SPEC §12.4's `Session`, `State` and usage lines)."""

    session_id: SessionIdField
    session_type: Literal["foreground", "background", "subagent"] = "foreground"
    state: SessionState
    turns: int = 0
    started_at: datetime | None = None
    running_s: float | None = None  # how long the running turn has run
    activity: str = ""  # `calling the model`, `running 2 tools`, `recovering`
    usage: Usage = Usage()  # the session's model calls, summed
    context_tokens: int = 0  # the estimate of the next call's request (SPEC §4.1)
    context_is_reported: bool = False  # anchored on the provider's count (else `≈`)
    context_model: str = ""  # the model whose window that is
    last_compaction: datetime | None = None
    compacted_tokens: tuple[int, int] | None = None  # the last compaction's before and after
    compaction_failure: str = ""  # the last compaction failed so: history is intact
    fallback: str = ""  # the running turn moved to this fallback model (SPEC §7.3)
    broken_reason: str = ""  # state `broken`: the history event that cannot be read
    waiting: int = 0  # user messages sent during the turn, not yet read into it


WAKE: msgspec.json.Decoder[WakeSession] = msgspec.json.Decoder(WakeSession)
SessionInput = HandleMessage | CancelTurn | ContinueTurn | CompactSession
SESSION_INPUT: msgspec.json.Decoder[SessionInput] = msgspec.json.Decoder(SessionInput)
Control = NudgeSession | StatusQuery
CONTROL: msgspec.json.Decoder[Control] = msgspec.json.Decoder(Control)
STATUS: msgspec.json.Decoder[SessionStatus] = msgspec.json.Decoder(SessionStatus)
NUDGE_TAKEN: msgspec.json.Decoder[NudgeTaken] = msgspec.json.Decoder(NudgeTaken)
