"""What channels publish on `sc.in.<channel>.<conv>` (stream SC_IN)."""

from datetime import datetime

import msgspec

from shared.messages.contract import Attachment, BusMessage, Chat, Sender


class MessageReceived(BusMessage, frozen=True, kw_only=True, tag="message_received"):
    """A person wrote to Stellaclaw in a conversation."""

    chat: Chat
    sender: Sender
    text: str
    received_at: datetime
    platform_message_id: int | None = None
    attachments: list[Attachment] = msgspec.field(default_factory=list)
    media_group_id: str = ""  # an album part: conversation merges the parts (SPEC §12.3)
    bot_name: str = ""  # the bot's own display name on the channel (`/start` greets with it)
    # Said to the person before the message goes on (a file too large to fetch, a kind of
    # message that cannot be read); a message with nothing else left is not passed on.
    notices: list[str] = msgspec.field(default_factory=list)


class AccessRequested(BusMessage, frozen=True, kw_only=True, tag="access_requested"):
    """Someone the bot does not serve wrote in a chat (SPEC §12.2). Nothing of what they wrote is
    carried: conversation decides on the one refusal and the admins' notification from this."""

    chat: Chat
    sender: Sender
    chat_title: str = ""  # a group's title; "" in a private chat
    wants_admin: bool = False  # `/admin_authorize` in a private chat while no admin exists
    received_at: datetime


class ChatRemoved(BusMessage, frozen=True, kw_only=True, tag="chat_removed"):
    """The bot was removed from a group (`left` or `kicked`): the conversation ends (SPEC §2.1)."""

    chat: Chat
    received_at: datetime


InboundMessage = MessageReceived | AccessRequested | ChatRemoved
INBOUND: msgspec.json.Decoder[InboundMessage] = msgspec.json.Decoder(InboundMessage)
RECEIVED: msgspec.json.Decoder[MessageReceived] = msgspec.json.Decoder(MessageReceived)
