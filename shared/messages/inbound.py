"""What channels publish on `sc.in.<conv>` (stream SC_IN)."""

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


InboundMessage = MessageReceived
INBOUND: msgspec.json.Decoder[InboundMessage] = msgspec.json.Decoder(InboundMessage)
