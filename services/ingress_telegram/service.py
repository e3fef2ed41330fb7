"""Telegram ingress: long-polls getUpdates for one bot and publishes what allowed users write.

Consumes: Telegram `getUpdates` (aiogram long polling against `telegram.api_base`): messages,
          edits, button presses, the bot's own membership; KV sc_auth (watched, read-only).
Produces: `MessageReceived`, `AccessRequested` (a stranger: no content) and `ChatRemoved` on
          `sc.in.telegram.<conv>` (stream SC_IN), msg id `tg:<bot>:<update_id>`; attachments in
          sc_files; `answerCallbackQuery` and the ack reaction straight to Telegram.
Owns:     the poll offset, passed only after the publish is acked; the newest published update per
          bot (KV sc_ingress), so a replay after the dedupe window is skipped.
"""

import asyncio
import contextlib
import logging

from aiogram import Bot, Dispatcher
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.utils.backoff import BackoffConfig
from aiogram.utils.token import TokenValidationError

from services.ingress_telegram import bot_setup
from services.ingress_telegram.access import AccessView
from services.ingress_telegram.relay import Bus, Relay
from shared import bus, subjects
from shared.config import TelegramConfig
from shared.errors import ConfigError
from shared.lifecycle import Runtime

SERVICE = "ingress_telegram"
VERSION = "0.1.0"
SESSION_TIMEOUT_S = 15  # aiogram's getUpdates deadline is this plus the 30 s long poll
POLL_TIMEOUT_S = 30
BACKOFF = BackoffConfig(min_delay=1, max_delay=30, factor=2, jitter=0.1)
ALLOWED_UPDATES = ["message", "edited_message", "callback_query", "my_chat_member"]
log = logging.getLogger(__name__)


async def run(runtime: Runtime, stop: asyncio.Event) -> None:
    telegram = runtime.config.telegram
    if telegram is None:
        raise ConfigError(
            "config: telegram: not configured; ingress_telegram needs a [telegram] section "
            "with bot_token"
        )
    bot = make_bot(telegram)
    try:
        async with bus.connected(runtime.bus, SERVICE) as conn:
            await bus.register(conn, "Telegram long polling into SC_IN", VERSION)
            marks = await bus.bucket(conn, subjects.INGRESS_BUCKET)
            auth = await bus.bucket(conn, subjects.AUTH_BUCKET)
            store = await conn.js.object_store(subjects.FILES_STORE)
            view = AccessView(telegram)
            me = await bot_setup.prepare(bot, telegram.api_base)
            watching = asyncio.create_task(view.watch(conn, auth))
            try:
                await view.started(watching)
                relay = Relay(Bus(conn, marks, store), bot, me, view, telegram)
                await relay.load_mark()
                log.info("polling as @%s", me.username, extra={"bot_id": me.id})
                await poll(bot, relay, stop)
            finally:
                watching.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watching
    finally:
        await bot.session.close()


def make_bot(telegram: TelegramConfig) -> Bot:
    session = AiohttpSession(
        api=TelegramAPIServer.from_base(telegram.api_base), timeout=SESSION_TIMEOUT_S
    )
    try:
        return Bot(telegram.bot_token, session=session)
    except TokenValidationError:
        raise ConfigError(
            "config: telegram.bot_token: not a Bot API token (expected <bot id>:<secret> "
            "from @BotFather)"
        ) from None


async def poll(bot: Bot, relay: Relay, stop: asyncio.Event) -> None:
    """Long-poll until `stop` is set; an update's offset passes only after its handler returned."""
    dispatcher = Dispatcher()
    dispatcher.message.register(relay.on_message)
    dispatcher.edited_message.register(relay.on_edited_message)
    dispatcher.callback_query.register(relay.on_callback)
    dispatcher.my_chat_member.register(relay.on_my_chat_member)
    async with asyncio.TaskGroup() as tasks:
        # started first, so it holds aiogram's running lock before stop_polling can be called
        polling = tasks.create_task(
            dispatcher.start_polling(
                bot,
                handle_signals=False,  # lifecycle.main owns SIGTERM and SIGINT
                handle_as_tasks=False,
                polling_timeout=POLL_TIMEOUT_S,
                backoff_config=BACKOFF,
                allowed_updates=ALLOWED_UPDATES,
            )
        )
        stopping = tasks.create_task(stop.wait())
        await asyncio.wait({polling, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if polling.done():
            stopping.cancel()
        else:
            await dispatcher.stop_polling()
