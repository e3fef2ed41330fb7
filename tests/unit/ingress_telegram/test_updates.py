"""Telegram messages into MessageReceived: conversation ids, chat kinds, senders, skips."""

from datetime import UTC, datetime, timedelta

import pytest
from aiogram.types import Message

from services.ingress_telegram import replay, updates
from shared import access
from shared.ids import ConversationId
from shared.messages.contract import Chat, Sender
from shared.messages.inbound import MessageReceived

SENT_AT = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def telegram_message(**fields: object) -> Message:
    """A Message decoded from the JSON Telegram sends, as aiogram decodes it."""
    raw: dict[str, object] = {
        "message_id": 11,
        "date": int(SENT_AT.timestamp()),
        "chat": {"id": 42, "type": "private", "first_name": "Ada"},
        "from": {"id": 42, "is_bot": False, "first_name": "Ada", "last_name": "Lovelace"},
        "text": "hello",
    }
    return Message.model_validate(raw | fields)


def test_a_private_message_becomes_message_received():
    received = taken(telegram_message())
    assert received is not None
    assert received.chat == Chat(
        conversation_id=ConversationId("tg_42"), channel="telegram", kind="private", chat_id=42
    )
    assert received.sender == Sender(user_id=42, display_name="Ada Lovelace")
    assert received.text == "hello"
    assert received.received_at == SENT_AT
    assert received.platform_message_id == 11


def test_a_forum_topic_is_its_own_conversation():
    message = telegram_message(
        chat={"id": -100123, "type": "supergroup", "title": "Lab", "is_forum": True},
        message_thread_id=7,
        is_topic_message=True,
    )
    chat = updates.chat_of(message)
    assert chat.conversation_id == "tg_-100123_t7"
    assert (chat.kind, chat.chat_id, chat.thread_id) == ("topic", -100123, 7)


def test_a_reply_thread_in_a_plain_group_stays_the_group():
    message = telegram_message(
        chat={"id": -55, "type": "group", "title": "Lab"}, message_thread_id=3
    )
    chat = updates.chat_of(message)
    assert (chat.conversation_id, chat.kind, chat.thread_id) == ("tg_-55", "group", None)


@pytest.mark.parametrize(
    ("user", "name"),
    [
        ({"first_name": "Ada"}, "Ada"),
        ({"first_name": "", "username": "ada"}, "@ada"),
        ({"first_name": ""}, "77"),
    ],
)
def test_the_sender_is_named_by_name_then_username_then_id(user, name):
    author = telegram_message(**{"from": {"id": 77, "is_bot": False} | user}).from_user
    assert author is not None
    sender = updates.sender_of(author)
    assert sender.display_name == name
    assert sender.user_id == 77


def test_a_caption_is_the_text_and_a_sticker_is_skipped():
    photo = [{"file_id": "f", "file_unique_id": "u", "width": 1, "height": 1}]
    captioned = telegram_message(text=None, caption="look", photo=photo)
    sticker = telegram_message(
        text=None,
        sticker={
            "file_id": "s",
            "file_unique_id": "su",
            "type": "regular",
            "width": 1,
            "height": 1,
            "is_animated": False,
            "is_video": False,
        },
    )
    received = taken(captioned)
    assert received is not None
    assert received.text == "look"
    only_a_file = taken(sticker)  # its file is fetched before it goes on
    assert only_a_file is not None
    assert only_a_file.text == ""


def test_trusted_users_are_served_anywhere_and_others_by_the_chats_access():
    assert access.verdict(None, 42, {42}) == "serve"
    assert access.verdict("rejected", 42, {42}) == "serve"
    assert access.verdict("approved", 7, {42}) == "serve"
    assert access.verdict(None, 7, {42}) == "refuse"
    assert access.verdict("pending", 7, {42}) == "ignore"
    assert access.verdict("rejected", None, {42}) == "ignore"


def taken(message: Message, *, is_edit: bool = False) -> MessageReceived | None:
    """The message as ingress takes it, its text as it reads."""
    return updates.message_received(message, updates.text_of(message) or "", is_edit=is_edit)


def test_a_replay_is_at_or_below_the_mark_unless_a_quiet_week_restarted_the_ids():
    mark = replay.PublishedMark(update_id=500, sent_at=SENT_AT)
    assert replay.is_replay(mark, 500, SENT_AT)
    assert replay.is_replay(mark, 12, SENT_AT - timedelta(days=30))
    assert not replay.is_replay(mark, 501, SENT_AT)
    assert not replay.is_replay(mark, 12, SENT_AT + timedelta(days=8))  # a fresh, random id
    assert not replay.is_replay(None, 1, SENT_AT)
    assert replay.MARK.decode(replay.encode(mark)) == mark


def test_a_reply_carries_the_quoted_message():
    replied = {
        "message_id": 9,
        "date": int(SENT_AT.timestamp()),
        "chat": {"id": 42, "type": "private", "first_name": "Ada"},
        "from": {"id": 7, "is_bot": True, "first_name": "Stellaclaw"},
        "text": "x" * 1_200,
    }
    received = taken(telegram_message(reply_to_message=replied, text="why?"))
    assert received is not None
    assert received.text == f'[Reply to Stellaclaw: "{"x" * 1_000}…"]\nwhy?'


def test_an_edit_becomes_an_edited_message_at_its_edit_time():
    edited_at = SENT_AT + timedelta(minutes=2)
    message = telegram_message(text="the fixed text", edit_date=int(edited_at.timestamp()))
    received = taken(message, is_edit=True)
    assert received is not None
    assert received.text == "[Edited Message]\nthe fixed text"
    assert received.received_at == edited_at


@pytest.mark.parametrize(
    ("fields", "text"),
    [
        (
            {"text": None, "location": {"latitude": 48.85, "longitude": 2.35}},
            "[Location: 48.85, 2.35]",
        ),
        (
            {
                "text": None,
                "contact": {
                    "phone_number": "+33 1 23",
                    "first_name": "Grace",
                    "last_name": "Hopper",
                },
            },
            "[Contact: Grace Hopper +33 1 23]",
        ),
    ],
)
def test_a_location_or_contact_becomes_text(fields, text):
    received = taken(telegram_message(**fields))
    assert received is not None
    assert received.text == text


def test_a_message_with_nothing_in_it_is_not_a_turn():
    assert taken(telegram_message(text="   \n ")) is None
    assert taken(telegram_message(text=None, sticker=None)) is None
