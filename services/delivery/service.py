"""Delivery service: sends the outputs of turns and commands to the chat platforms.

Consumes: Telegram outputs (SC_OUT, `sc.out.telegram.*`) with one durable feeding a lane per
          chat (order per chat; a waiting chat holds up no other; `lanes`); nothing when the
          config has no [telegram] section (bus clients such as `stellaclaw chat` read their
          outputs from SC_OUT_CLI themselves).
Produces: Telegram Bot API calls: sendMessage (answers, failure notices, the progress panel),
          editMessageText and deleteMessage (the panel), sendMessageDraft (streamed answers),
          sendChatAction (typing), setMessageReaction (👀 on a bus client's follow-up), sendPhoto,
          sendDocument (also an answer over 12 parts), sendAudio, sendVoice, sendVideo,
          sendAnimation, sendMediaGroup (files read from sc_files).
Owns:     sent-message records (KV sc_delivery), panels (KV sc_panel), the typing loops' tasks;
          while active, the lease `leader.delivery.<bot>` (KV sc_lease): one active instance per
          bot, others stand by.
"""

import asyncio
import logging
import os

from services.delivery.bot_api import open_api
from services.delivery.lanes import Lanes
from services.delivery.panels import Panels
from services.delivery.telegram_sender import TelegramSender
from services.delivery.typing_indicator import TypingIndicators
from shared import bus, layout, leader, subjects
from shared.config import TelegramConfig
from shared.leases import Owner
from shared.lifecycle import Runtime
from shared.messages.outbound import Output, ShowProgress, StreamText

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
                await _lead(conn, runtime.config.telegram, runtime, stop)
        finally:
            await service.stop()


async def _lead(
    conn: bus.Connection, telegram: TelegramConfig, runtime: Runtime, stop: asyncio.Event
) -> None:
    """Deliver only while this instance holds `leader.delivery.<bot>`: a second instance stands
    by and takes over within the lease's TTL (DESIGN §3), so two never send the same output."""
    leases_kv = await bus.bucket(conn, subjects.LEASE_BUCKET)
    bot = telegram.bot_token.split(":", 1)[0]
    owner = Owner(owner_id=runtime.owner_id, pid=os.getpid())

    async def deliver(ended: asyncio.Event) -> None:
        await _deliver_telegram(conn, telegram, runtime, ended)

    await leader.lead(leases_kv, subjects.leader_key("delivery", bot), owner, stop, deliver)


async def _deliver_telegram(
    conn: bus.Connection, telegram: TelegramConfig, runtime: Runtime, stop: asyncio.Event
) -> None:
    kv = await bus.bucket(conn, subjects.DELIVERY_BUCKET)
    panels_kv = await bus.bucket(conn, subjects.PANEL_BUCKET)
    async with open_api(telegram.api_base, telegram.bot_token) as api, asyncio.TaskGroup() as tasks:
        typing = TypingIndicators(api, tasks)
        panels = Panels(api, panels_kv, telegram, tasks)
        sender = TelegramSender(conn, kv, api, typing, panels)
        [outputs] = layout.durables(runtime.config.bus)["delivery"]
        lanes = Lanes(conn, outputs, sender.handle, stop)
        lanes.supersedes = supersedes
        fetching = tasks.create_task(lanes.run(tasks))
        await stop.wait()
        sender.stopping()
        typing.end_all()
        panels.end_all()
        await fetching  # stopped fetching; what waited in the lanes went back to the server
        in_hand = [lane.worker for lane in lanes.lanes.values() if lane.worker]
        if in_hand:
            _, late = await asyncio.wait(in_hand, timeout=runtime.config.shutdown_grace_s)
            for worker in late:  # the output in hand is left un-acked for the next process
                worker.cancel()
            if late:
                log.warning(
                    "%d output(s) were still being sent after %.0f s; left un-acked",
                    len(late),
                    runtime.config.shutdown_grace_s,
                )


def supersedes(old: Output, new: Output) -> bool:
    """A turn's newer progress snapshot or streamed text makes the waiting one moot."""
    if isinstance(old, ShowProgress) and isinstance(new, ShowProgress):
        # a panel's end state is never dropped: it says how the turn ended
        return old.turn_id == new.turn_id and new.seq > old.seq and not old.ending
    if isinstance(old, StreamText) and isinstance(new, StreamText):
        return old.turn_id == new.turn_id and new.seq > old.seq
    return False
