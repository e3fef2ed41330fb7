"""Delivery service: sends the outputs of turns and commands to the chat platforms.

Consumes: Telegram outputs (SC_OUT, `sc.out.telegram.*`) with one durable, one output at a time
          (order per chat); nothing when the config has no [telegram] section (bus clients such as
          `stellaclaw chat` read their outputs from SC_OUT themselves).
Produces: Telegram Bot API calls: sendMessage (answers, failure notices), sendChatAction (typing),
          setMessageReaction (👀 on a follow-up read during a turn), sendPhoto, sendDocument,
          sendAudio, sendVoice, sendVideo, sendAnimation (files read from sc_files).
Owns:     sent-message records (KV sc_delivery), the typing loops' tasks.
"""

import asyncio
import logging

from services.delivery.bot_api import open_api
from services.delivery.telegram_sender import TelegramSender
from services.delivery.typing_indicator import TypingIndicators
from shared import bus, layout, subjects
from shared.config import TelegramConfig
from shared.lifecycle import Runtime
from shared.messages.outbound import OUTPUT

VERSION = "0.1.0"
log = logging.getLogger(__name__)


async def run(runtime: Runtime, stop: asyncio.Event) -> None:
    async with bus.connected(runtime.bus, "delivery") as conn:
        service = await bus.register(conn, "sends outputs to Telegram", VERSION)
        try:
            if runtime.config.telegram is None:
                log.info("no [telegram] section: no outputs to deliver")
                await stop.wait()
            else:
                await _deliver_telegram(conn, runtime.config.telegram, runtime, stop)
        finally:
            await service.stop()


async def _deliver_telegram(
    conn: bus.Connection, telegram: TelegramConfig, runtime: Runtime, stop: asyncio.Event
) -> None:
    kv = await bus.bucket(conn, subjects.DELIVERY_BUCKET)
    async with open_api(telegram.api_base, telegram.bot_token) as api, asyncio.TaskGroup() as tasks:
        typing = TypingIndicators(api, tasks)
        sender = TelegramSender(conn, kv, api, typing, stop)
        [outputs] = layout.durables(runtime.config.bus)["delivery"]  # one lane: order per chat
        consuming = tasks.create_task(bus.consume(conn, outputs, OUTPUT, sender.handle, stop))
        await stop.wait()
        typing.end_all()
        try:
            async with asyncio.timeout(runtime.config.shutdown_grace_s):
                await consuming  # the output in hand is finished, or left for the next process
        except TimeoutError:
            log.warning(
                "an output was still being sent after %.0f s; left un-acked",
                runtime.config.shutdown_grace_s,
            )
