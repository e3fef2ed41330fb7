"""What the bot tells Telegram at start: who it is, no webhook, and its command menu."""

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError, TelegramUnauthorizedError
from aiogram.types import (
    BotCommand,
    BotCommandScopeAllGroupChats,
    BotCommandScopeAllPrivateChats,
    User,
)

from shared.errors import ConfigError, TransientError

# Every user command; admin commands are never listed (SPEC §12.1).
COMMANDS = [
    BotCommand(command=name, description=description)
    for name, description in (
        ("status", "model, context, usage and running work"),
        ("model", "show or switch the model"),
        ("reasoning", "reasoning effort for this chat"),
        ("sandbox", "how commands are isolated"),
        ("remote", "run tools on an SSH remote"),
        ("cancel", "stop the running turn (/cancel all: background tasks too)"),
        ("continue", "resume an interrupted or failed turn"),
        ("compact", "compact the context now"),
        ("new", "start a fresh session (files are kept)"),
        ("help", "the list of commands"),
    )
]


async def prepare(bot: Bot, api_base: str) -> User:
    """getMe, deleteWebhook, setMyCommands; a refused token is the operator's to fix."""
    try:
        me = await bot.get_me()
        await bot.delete_webhook()
        for scope in (BotCommandScopeAllPrivateChats(), BotCommandScopeAllGroupChats()):
            await bot.set_my_commands(COMMANDS, scope=scope)
    except TelegramUnauthorizedError:
        raise ConfigError(
            "config: telegram.bot_token: the Bot API refused the token (401 Unauthorized); "
            "copy it again from @BotFather"
        ) from None
    except TelegramAPIError as exc:
        raise TransientError(
            f"telegram: the Bot API at {api_base!r} failed at start: {exc}"
        ) from exc
    return me
