"""Telegram messages as Stellaclaw sees them: conversation ids, chats, senders, MessageReceived."""

from collections.abc import Collection

from aiogram.types import Message, User

from shared.ids import ConversationId
from shared.messages.contract import Chat, ChatKind, Sender
from shared.messages.inbound import MessageReceived


def conversation_id(chat_id: int, thread_id: int | None = None) -> ConversationId:
    """`tg_<chat>`, or `tg_<chat>_t<thread>` for a forum topic (each topic is a conversation)."""
    if thread_id is None:
        return ConversationId(f"tg_{chat_id}")
    return ConversationId(f"tg_{chat_id}_t{thread_id}")


def chat_of(message: Message) -> Chat:
    # a reply in a plain group carries a message_thread_id too; only forum topics are their own
    thread_id = message.message_thread_id if message.is_topic_message else None
    kind: ChatKind = "group"
    if message.chat.type == "private":
        kind = "private"
    elif thread_id is not None:
        kind = "topic"
    return Chat(
        conversation_id=conversation_id(message.chat.id, thread_id),
        channel="telegram",
        kind=kind,
        chat_id=message.chat.id,
        thread_id=thread_id,
    )


def sender_of(user: User) -> Sender:
    """The display name is the first and last name, else @username, else the user id."""
    name = " ".join(part for part in (user.first_name, user.last_name) if part)
    if not name:
        name = f"@{user.username}" if user.username else str(user.id)
    return Sender(user_id=user.id, display_name=name, username=user.username)


def is_allowed(message: Message, allowed_user_ids: Collection[int]) -> bool:
    return message.from_user is not None and message.from_user.id in allowed_user_ids


def message_received(message: Message) -> MessageReceived | None:
    """The bus message for a text or a caption; None for anything else (or no sender)."""
    text = message.text if message.text is not None else message.caption
    if text is None or message.from_user is None:
        return None
    return MessageReceived(
        chat=chat_of(message),
        sender=sender_of(message.from_user),
        text=text,
        received_at=message.date,
        platform_message_id=message.message_id,
    )
