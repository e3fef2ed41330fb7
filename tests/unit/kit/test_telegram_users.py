"""The kit's Telegram server acts as users do: entities, replies, presses, edits, removals."""

from collections.abc import AsyncIterator

import httpx
import pytest
from aiogram.exceptions import TelegramBadRequest
from aiogram.types import (
    BotCommand,
    BotCommandScopeAllGroupChats,
    ChatMemberBanned,
    ChatMemberLeft,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
)

from tests.kit.telegram_users import text_entities
from tests.kit.telegram_wire import Entity

ADA = 42
GROUP = -100777


@pytest.fixture
async def http(telegram) -> AsyncIterator[httpx.AsyncClient]:
    base = f"{telegram.base_url}/bot{telegram.token}/"
    async with httpx.AsyncClient(base_url=base, timeout=httpx.Timeout(10.0)) as client:
        yield client


def marked(text: str) -> list[tuple[str, str]]:
    return [(e.type, text[e.offset : e.offset + e.length]) for e in text_entities(text)]


def test_commands_and_mentions_are_marked_as_telegram_marks_them():
    assert marked("/model@stellaclaw_test_bot gpt") == [
        ("bot_command", "/model@stellaclaw_test_bot")
    ]
    assert marked("@stellaclaw_test_bot /status please") == [
        ("mention", "@stellaclaw_test_bot"),
        ("bot_command", "/status"),
    ]
    assert marked("mail ada@example.com or a/b, /x@ab, @abc, @gif") == [("mention", "@gif")]
    assert marked("path/to /ok") == [("bot_command", "/ok")]


def test_offsets_count_utf16_code_units():
    assert text_entities("😀 /help") == [Entity(type="bot_command", offset=3, length=5)]


async def test_a_message_gets_its_entities_a_group_title_and_a_reply(bot, telegram):
    first = telegram.user_says(GROUP, "hi all", user_id=ADA, chat_type="group", title="Lab")
    telegram.user_says(
        GROUP,
        "@stellaclaw_test_bot /status",
        user_id=7,
        chat_type="group",
        title="Lab",
        reply_to_message_id=telegram.message_id(first),
    )
    _, asking = await bot.get_updates(timeout=0)
    message = asking.message
    assert message is not None
    assert message.chat.title == "Lab"
    assert [(e.type, e.offset, e.length) for e in message.entities or ()] == [
        ("mention", 0, 20),
        ("bot_command", 21, 7),
    ]
    replied = message.reply_to_message
    assert replied is not None
    assert (replied.text, replied.from_user.id if replied.from_user else None) == ("hi all", ADA)


async def test_a_reply_to_the_bot_carries_its_message_as_sent(bot, telegram):
    sent = await bot.send_message(ADA, "pick one")
    telegram.user_says(ADA, "this", reply_to_message_id=sent.message_id)
    with pytest.raises(ValueError, match="no message 999"):
        telegram.user_says(ADA, "that", reply_to_message_id=999)
    [update] = await bot.get_updates(timeout=0)
    replied = update.message.reply_to_message if update.message else None
    assert replied is not None
    assert (replied.text, replied.from_user.is_bot if replied.from_user else None) == (
        "pick one",
        True,
    )


async def test_buttons_are_kept_pressed_and_answered(bot, telegram):
    keyboard = InlineKeyboardMarkup(
        inline_keyboard=[
            [InlineKeyboardButton(text="Approve", callback_data="/admin_chat_approve tg_-1")],
            [InlineKeyboardButton(text="Reject", callback_data="/admin_chat_reject tg_-1")],
        ]
    )
    message = await bot.send_message(ADA, "🔔 someone wants in", reply_markup=keyboard)
    sent = await telegram.next_sent(ADA)
    assert sent.buttons == (
        (("Approve", "/admin_chat_approve tg_-1"),),
        (("Reject", "/admin_chat_reject tg_-1"),),
    )
    update_id = telegram.user_presses(ADA, message.message_id, "/admin_chat_reject tg_-1")
    with pytest.raises(ValueError, match="no button"):
        telegram.user_presses(ADA, message.message_id, "/other")
    [update] = await bot.get_updates(timeout=0)
    query = update.callback_query
    assert query is not None
    assert (query.data, query.from_user.id) == ("/admin_chat_reject tg_-1", ADA)
    assert query.chat_instance
    assert query.message is not None
    assert query.message.message_id == message.message_id
    assert telegram.answer_to(update_id) is None
    assert await bot.answer_callback_query(query.id, text="Rejected") is True
    answer = telegram.answer_to(update_id)
    assert answer is not None
    assert (answer.callback_query_id, answer.text) == (query.id, "Rejected")
    with pytest.raises(TelegramBadRequest, match="query is too old"):
        await bot.answer_callback_query(query.id)


async def test_callback_data_over_64_bytes_is_refused(http, telegram):
    button = {"text": "x", "callback_data": "é" * 33}  # 66 bytes
    body = {"chat_id": ADA, "text": "choose", "reply_markup": {"inline_keyboard": [[button]]}}
    refused = await http.post("sendMessage", json=body)
    assert refused.status_code == 400
    assert refused.json()["description"] == "Bad Request: BUTTON_DATA_INVALID"
    assert telegram.sent == []


async def test_an_edit_is_an_edited_message_with_its_new_text(bot, telegram):
    update_id = telegram.user_says(ADA, "helo")
    await bot.get_updates(timeout=0)
    edit_id = telegram.user_edits(update_id, "hello /help")
    updates = await bot.get_updates(offset=update_id + 1, timeout=0)
    assert [u.update_id for u in updates] == [edit_id]
    edited = updates[0].edited_message
    assert edited is not None
    assert edited.message_id == telegram.message_id(update_id)
    assert edited.text == "hello /help"
    assert edited.edit_date is not None
    assert [(e.type, e.offset) for e in edited.entities or ()] == [("bot_command", 6)]


async def test_the_bot_removed_from_a_group_is_a_my_chat_member_update(bot, telegram):
    telegram.bot_removed(GROUP, title="Lab", user_id=ADA)
    telegram.bot_removed(-5, status="left", chat_type="group")
    kicked, left = await bot.get_updates(timeout=0)
    assert kicked.my_chat_member is not None
    assert kicked.my_chat_member.chat.title == "Lab"
    assert kicked.my_chat_member.from_user.id == ADA
    assert kicked.my_chat_member.old_chat_member.status == "member"
    banned = kicked.my_chat_member.new_chat_member
    assert isinstance(banned, ChatMemberBanned)
    assert banned.user.id == telegram.bot_id
    assert left.my_chat_member is not None
    assert isinstance(left.my_chat_member.new_chat_member, ChatMemberLeft)


async def test_member_counts_and_command_menus(bot, telegram):
    telegram.user_says(GROUP, "hi", user_id=ADA, chat_type="supergroup")
    assert await bot.get_chat_member_count(ADA) == 2
    assert await bot.get_chat_member_count(GROUP) == 5
    telegram.set_member_count(GROUP, 2)
    assert await bot.get_chat_member_count(GROUP) == 2
    menu = [BotCommand(command="help", description="this list")]
    await bot.set_my_commands(menu, scope=BotCommandScopeAllGroupChats())
    await bot.set_my_commands([BotCommand(command="status", description="usage")])
    with pytest.raises(TelegramBadRequest, match="BOT_COMMAND_INVALID"):
        await bot.set_my_commands([BotCommand(command="Bad-Name", description="no")])
    assert telegram.my_commands("all_group_chats") == [("help", "this list")]
    assert telegram.my_commands() == [("status", "usage")]
    assert telegram.my_commands("all_private_chats") == []


async def test_get_updates_gives_only_the_types_the_bot_asked_for(bot, telegram):
    said = telegram.user_says(ADA, "hi")
    edited = telegram.user_edits(said, "hi there")
    asked = await bot.get_updates(timeout=0, allowed_updates=["message"])
    later = await bot.get_updates(timeout=0)  # the setting is kept, as on Telegram
    everything = await bot.get_updates(timeout=0, allowed_updates=[])
    assert [u.update_id for u in asked] == [said]
    assert [u.update_id for u in later] == [said]
    assert [u.update_id for u in everything] == [said]  # the edit was dropped for good
    telegram.replay(edited)
    assert [u.update_id for u in await bot.get_updates(timeout=0)] == [said, edited]
