"""Telegram messages as Stellaclaw sees them: conversation ids, chats, senders, MessageReceived."""

from datetime import UTC, datetime

from aiogram.types import Chat as TelegramChat
from aiogram.types import InaccessibleMessage, Message, User

from shared.ids import ConversationId
from shared.messages.contract import Chat, ChatKind, Sender
from shared.messages.inbound import MessageReceived


def conversation_id(chat_id: int, thread_id: int | None = None) -> ConversationId:
    """`tg_<chat>`, or `tg_<chat>_t<thread>` for a forum topic (each topic is a conversation)."""
    if thread_id is None:
        return ConversationId(f"tg_{chat_id}")
    return ConversationId(f"tg_{chat_id}_t{thread_id}")


def chat_of(message: Message | InaccessibleMessage) -> Chat:
    # a reply in a plain group carries a message_thread_id too; only forum topics are their own
    thread_id = None
    if isinstance(message, Message) and message.is_topic_message:
        thread_id = message.message_thread_id
    return chat_in(message.chat, thread_id)


def chat_in(chat: TelegramChat, thread_id: int | None = None) -> Chat:
    kind: ChatKind = "group"
    if chat.type == "private":
        kind = "private"
    elif thread_id is not None:
        kind = "topic"
    return Chat(
        conversation_id=conversation_id(chat.id, thread_id),
        channel="telegram",
        kind=kind,
        chat_id=chat.id,
        thread_id=thread_id,
    )


def sender_of(user: User) -> Sender:
    """The display name is the first and last name, else @username, else the user id."""
    name = " ".join(part for part in (user.first_name, user.last_name) if part)
    if not name:
        name = f"@{user.username}" if user.username else str(user.id)
    return Sender(user_id=user.id, display_name=name, username=user.username)


QUOTE_CHARS = 1000  # of the replied-to message (SPEC §12.3)
EDITED = "[Edited Message]"
CANNOT_READ = "I can't read this kind of message yet."
# What people send that Stellaclaw cannot take in (SPEC §12.3); service messages (a member
# joined, a title changed, …) are none of these and pass silently.
UNREADABLE = ("poll", "dice", "game", "story", "invoice", "paid_media", "giveaway", "checklist")
FILE_KINDS = ("photo", "document", "audio", "voice", "video", "video_note", "animation", "sticker")


def is_unreadable(message: Message) -> bool:
    return any(getattr(message, kind, None) is not None for kind in UNREADABLE)


def has_file(message: Message) -> bool:
    return any(getattr(message, kind, None) for kind in FILE_KINDS)


def text_of(message: Message) -> str | None:
    """The message's text: its text or caption; a location or contact as a line (SPEC §12.3)."""
    if message.text is not None:
        return message.text
    if message.caption is not None:
        return message.caption
    if message.location is not None:
        return f"[Location: {message.location.latitude}, {message.location.longitude}]"
    if message.contact is not None:
        contact = message.contact
        name = " ".join(part for part in (contact.first_name, contact.last_name) if part)
        return f"[Contact: {name} {contact.phone_number}]"
    return None


def quote_of(message: Message) -> str:
    """`[Reply to <name>: "<text>"]` for a reply (its text cut at QUOTE_CHARS), else ""."""
    replied = message.reply_to_message
    if replied is None:
        return ""
    who = sender_of(replied.from_user).display_name if replied.from_user else "someone"
    text = text_of(replied) or ""
    if len(text) > QUOTE_CHARS:
        text = text[:QUOTE_CHARS] + "…"
    return f'[Reply to {who}: "{text}"]\n'


def sent_at(message: Message, *, is_edit: bool) -> datetime:
    """When the person sent it: an edit's time for an edit."""
    edited = message.edit_date if is_edit else None
    if isinstance(edited, int):
        return datetime.fromtimestamp(edited, UTC)
    return edited or message.date


def message_received(
    message: Message, text: str, *, is_edit: bool = False
) -> MessageReceived | None:
    """The bus message for what a person wrote (`text`: its words as the bot takes them, the
    mention removed; an edit marked as one), without its file; None when there is nothing to
    take in: no sender, or no text and no file (a message with nothing in it is not a turn)."""
    if message.from_user is None:
        return None
    if not text.strip() and (is_edit or not has_file(message)):
        return None
    text = quote_of(message) + text
    if is_edit:
        text = f"{EDITED}\n{text}"
    return MessageReceived(
        chat=chat_of(message),
        sender=sender_of(message.from_user),
        text=text,
        received_at=sent_at(message, is_edit=is_edit),
        platform_message_id=message.message_id,
        media_group_id=message.media_group_id or "",
    )
