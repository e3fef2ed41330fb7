"""Outputs on `sc.out.<channel>.<conv>` (SC_OUT for delivery, SC_OUT_CLI for bus clients).

No output carries more than MAX_TEXT_BYTES of text: a longer answer is stored in `sc_files` and
the output names it (`text_file`), since NATS refuses a message over 1 MiB (SPEC §12.7).
"""

from datetime import datetime
from typing import Literal

import msgspec

from shared.ids import OutIdField, TurnIdField
from shared.messages.contract import Attachment, BusMessage, Chat, Value
from shared.messages.tools import FileToSend, SendAs

MAX_TEXT_BYTES = 256 * 1024


class ShowTyping(BusMessage, frozen=True, kw_only=True, tag="show_typing"):
    """A turn started: show typing in the chat until the turn's answer is sent."""

    chat: Chat
    out_id: OutIdField
    turn_id: TurnIdField


class Button(Value, frozen=True, kw_only=True):
    """An inline button under a reply; pressing it sends `data` as the user's text."""

    text: str
    data: str  # ≤ 64 bytes (Telegram's callback_data limit)


class SendReply(BusMessage, frozen=True, kw_only=True, tag="send_reply"):
    """Send Markdown text to the chat: a turn's answer, its failure, or a command reply."""

    chat: Chat
    out_id: OutIdField  # unique per output; the key of its sc_delivery record
    text: str
    turn_id: TurnIdField | None = None  # set on a turn's answer or failure: ends its typing
    is_failure: bool = False
    reply_to_message_id: int | None = None
    text_file: str | None = None  # the whole text is this `sc_files` object; `text` is empty
    settles: int = 1  # the user inputs it answers: a turn's message and the follow-ups it took in
    buttons: list[list[Button]] = msgspec.field(default_factory=list)  # rows of inline buttons


class SetReaction(BusMessage, frozen=True, kw_only=True, tag="set_reaction"):
    """React to a user's message (SPEC §12.5): 👀 when a follow-up was read during a turn."""

    chat: Chat
    out_id: OutIdField
    message_id: int  # the platform message reacted to
    emoji: str


class SendFile(BusMessage, frozen=True, kw_only=True, tag="send_file"):
    """Send a file from sc_files to the chat (`send_file`, generated images; SPEC §5.6, §12.8)."""

    chat: Chat
    out_id: OutIdField
    file: Attachment
    caption: str = ""  # Markdown
    send_as: SendAs = "auto"
    turn_id: TurnIdField | None = None
    # The other photos of the same tool call, in order: the output is one album (SPEC §12.8),
    # each file with its own caption. Only Telegram outputs carry them.
    more: list[FileToSend] = msgspec.field(default_factory=list)


ToolLineState = Literal["running", "done", "failed"]
StepState = Literal["done", "doing", "todo"]
Phase = Literal["thinking", "tools", "compacting", "writing"]
Ending = Literal["", "done", "failed", "cancelled", "round_limit", "interrupted"]


class ToolLine(Value, frozen=True, kw_only=True):
    """One call of the current batch on the progress panel: `⏳ shell: pytest -q`."""

    tool: str
    brief: str  # one line ≤ 40 chars of its key argument (SPEC §12.6)
    state: ToolLineState


class PlanStep(Value, frozen=True, kw_only=True):
    text: str  # ≤ 50 chars
    state: StepState


class ShowProgress(BusMessage, frozen=True, kw_only=True, tag="show_progress"):
    """A foreground turn's state for its progress panel (SPEC §12.6): a whole snapshot, so the
    newest wins and any one may be dropped. Published coalesced (a few a second at most);
    `ending` set once, when the turn ends."""

    chat: Chat
    out_id: OutIdField  # `prg_<turn>_<seq>`
    turn_id: TurnIdField
    seq: int  # increases within the turn
    model: str
    started_at: datetime  # the turn's start, for the elapsed time
    phase: Phase = "thinking"
    tools: list[ToolLine] = msgspec.field(default_factory=list)  # the current batch
    tools_done: int = 0  # of the current batch
    calls: int = 0  # tool calls in the whole turn (the `Done` line)
    has_batch: bool = False  # a tool batch ran: the panel is due at once
    preamble: str = ""  # the model's latest text before its calls, ≤ 200 chars
    plan: str = ""  # the plan's explanation, ≤ 60 chars
    steps: list[PlanStep] = msgspec.field(default_factory=list)  # ≤ 7
    new_messages: int = 0  # follow-ups waiting for the next step
    warning: str = ""  # a fallback or recovery line
    ending: Ending = ""
    reason: str = ""  # why it failed


class StreamText(BusMessage, frozen=True, kw_only=True, tag="stream_text"):
    """The answer as it is being written (SPEC §12.7 streaming), the whole text so far (≤ 4,096
    UTF-16 units kept); published coalesced, ≥ 1 s apart; the newest wins."""

    chat: Chat
    out_id: OutIdField  # `str_<turn>_<seq>`
    turn_id: TurnIdField
    seq: int
    text: str


Output = ShowTyping | SendReply | SetReaction | SendFile | ShowProgress | StreamText
OUTPUT: msgspec.json.Decoder[Output] = msgspec.json.Decoder(Output)
