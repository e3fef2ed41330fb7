"""Which group messages are for the bot (SPEC §12.3): a mention, a reply to the bot, a command
for this bot, a group of just the user and the bot, or `telegram.group_trigger = "all"`."""

import logging
import re
import time
from typing import Literal

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError
from aiogram.types import Message, User

MEMBERS_TTL_S = 60.0
Trigger = Literal["mention", "all"]
log = logging.getLogger(__name__)


def mention_pattern(username: str) -> re.Pattern[str]:
    return re.compile(rf"(?<!\S)@{re.escape(username)}\b", re.IGNORECASE)


def without_mention(text: str, username: str) -> str:
    """The text with `@<bot>` taken out (`@bot /status` → `/status`)."""
    return re.sub(r"[ \t]{2,}", " ", mention_pattern(username).sub("", text)).strip()


def command_target(text: str) -> str | None:
    """The bot a leading command names (`/cmd@name` → name), "" for a bare `/cmd`, None when
    the text is no command."""
    if not text.startswith("/") or text.startswith("//"):
        return None
    head = text[1:].split(maxsplit=1)[0] if text[1:].strip() else ""
    _, _, target = head.partition("@")
    return target


class Groups:
    """The group rule for one bot, with member counts cached MEMBERS_TTL_S per chat."""

    def __init__(self, bot: Bot, me: User, trigger: Trigger) -> None:
        self.bot = bot
        self.me = me
        self.trigger = trigger
        self.members: dict[int, tuple[float, int]] = {}

    def is_mentioned(self, text: str) -> bool:
        return bool(self.me.username) and bool(mention_pattern(self.me.username or "").search(text))

    def is_reply_to_me(self, message: Message) -> bool:
        replied = message.reply_to_message
        return (
            replied is not None
            and replied.from_user is not None
            and (replied.from_user.id == self.me.id)
        )

    async def is_for_me(self, message: Message, text: str) -> bool:
        """Is a group message addressed to the bot? (Commands for other bots never are.)"""
        stripped = without_mention(text, self.me.username or "") if self.me.username else text
        target = command_target(stripped)
        if target is not None:
            return target == "" or target.lower() == (self.me.username or "").lower()
        if self.trigger == "all" or self.is_mentioned(text) or self.is_reply_to_me(message):
            return True
        return await self.member_count(message.chat.id) == 2

    async def member_count(self, chat_id: int) -> int:
        """`getChatMemberCount`, cached; 0 when Telegram does not say."""
        now = time.monotonic()
        cached = self.members.get(chat_id)
        if cached is not None and now - cached[0] < MEMBERS_TTL_S:
            return cached[1]
        try:
            count = await self.bot.get_chat_member_count(chat_id)
        except TelegramAPIError as exc:
            log.warning("getChatMemberCount for chat %d failed: %s", chat_id, exc)
            return 0
        self.members[chat_id] = (now, count)
        return count
