"""Telegram ingress: long-polls getUpdates for one bot and publishes what allowed users write.

Consumes: Telegram `getUpdates` (aiogram long polling against `telegram.api_base`): messages,
          edits, button presses, the bot's own membership; KV sc_auth (watched, read-only).
Produces: `MessageReceived`, `AccessRequested` (a stranger: no content) and `ChatRemoved` on
          `sc.in.telegram.<conv>` (stream SC_IN), msg id `tg:<bot>:<update_id>`; attachments in
          sc_files; `answerCallbackQuery` and the ack reaction straight to Telegram.
Owns:     the poll offset, passed only after the publish is acked; the newest published update per
          bot (KV sc_ingress), so a replay after the dedupe window is skipped; while it polls, the
          lease `leader.ingress.<bot>` (KV sc_lease): one poller per bot, others stand by.
"""

import asyncio
import contextlib
import logging
import os

from aiogram import Bot, Dispatcher
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.types import User
from aiogram.utils.backoff import BackoffConfig
from aiogram.utils.token import TokenValidationError
from nats.js.kv import KeyValue

from services.ingress_telegram import bot_setup
from services.ingress_telegram.access import AccessView
from services.ingress_telegram.relay import Bus, Relay
from shared import bus, leader, subjects
from shared.config import TelegramConfig
from shared.errors import ConfigError
from shared.leases import Owner
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
            me = await bot_setup.prepare(bot, telegram.api_base)
            leases_kv = await bus.bucket(conn, subjects.LEASE_BUCKET)
            owner = Owner(owner_id=runtime.owner_id, pid=os.getpid())
            parts = Bus(conn, marks, store)

            async def active(ended: asyncio.Event) -> None:
                await _poll_while_active(parts, auth, bot, me, telegram, ended)

            key = subjects.leader_key("ingress", str(me.id))
            await leader.lead(leases_kv, key, owner, stop, active)
    finally:
        await bot.session.close()


async def _poll_while_active(  # noqa: PLR0913 -- the parts one poller needs
    parts: Bus, auth: KeyValue, bot: Bot, me: User, telegram: TelegramConfig, ended: asyncio.Event
) -> None:
    """Poll while this instance holds `leader.ingress.<bot>`: Telegram allows one getUpdates
    poller per bot, so a second instance stands by and takes over (DESIGN §3)."""
    view = AccessView(telegram)
    watching = asyncio.create_task(view.watch(parts.conn, auth))
    try:
        await view.started(watching)
        relay = Relay(parts, bot, me, view, telegram)
        await relay.load_mark()
        log.info("polling as @%s", me.username, extra={"bot_id": me.id})
        await poll(bot, relay, ended)
    finally:
        watching.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watching


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
