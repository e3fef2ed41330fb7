"""Sample bus messages for tests."""

from datetime import UTC, datetime

from shared.ids import ConversationId
from shared.messages.contract import Chat, Sender
from shared.messages.inbound import MessageReceived


def message_received(conv: str, text: str, *, user_id: int = 42) -> MessageReceived:
    return MessageReceived(
        chat=Chat(conversation_id=ConversationId(conv), channel="cli", kind="cli"),
        sender=Sender(user_id=user_id, display_name="Ada"),
        text=text,
        received_at=datetime.now(UTC),
    )
