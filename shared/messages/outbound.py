"""Outputs on `sc.out.<channel>.<conv>` (stream SC_OUT): delivery sends them to the platform,
bus clients (`stellaclaw chat`) read them directly."""

import msgspec

from shared.ids import OutIdField, TurnIdField
from shared.messages.contract import BusMessage, Chat


class ShowTyping(BusMessage, frozen=True, kw_only=True, tag="show_typing"):
    """A turn started: show typing in the chat until the turn's answer is sent."""

    chat: Chat
    out_id: OutIdField
    turn_id: TurnIdField


class SendReply(BusMessage, frozen=True, kw_only=True, tag="send_reply"):
    """Send Markdown text to the chat: a turn's answer, its failure, or a command reply."""

    chat: Chat
    out_id: OutIdField  # unique per output; the key of its sc_delivery record
    text: str
    turn_id: TurnIdField | None = None  # set on a turn's answer or failure: ends its typing
    is_failure: bool = False
    reply_to_message_id: int | None = None


Output = ShowTyping | SendReply
OUTPUT: msgspec.json.Decoder[Output] = msgspec.json.Decoder(Output)
