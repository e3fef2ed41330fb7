"""Ingress's view of KV `sc_auth` (SPEC §12.2, DESIGN §4): who is served, watched live so a
stranger is refused before anything of their message is stored. Only conversation writes it."""

import asyncio
import contextlib
import logging

import nats.errors
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue

from shared import access, bus, subjects
from shared.access import ADMINS, CHAT_ACCESS, AccessState, Verdict
from shared.config import TelegramConfig
from shared.messages.contract import Chat

log = logging.getLogger(__name__)


class AccessView:
    """The allowed users and admins of the config, and what sc_auth holds, kept current."""

    def __init__(self, telegram: TelegramConfig) -> None:
        self.configured_admins = frozenset(telegram.admin_user_ids)
        self.allowed = frozenset(telegram.allowed_user_ids) | self.configured_admins
        self.recorded_admins: frozenset[int] = frozenset()
        self.chats: dict[str, AccessState] = {}
        self.ready = asyncio.Event()  # the bucket's current values are read

    def has_admin(self) -> bool:
        return bool(self.configured_admins or self.recorded_admins)

    def verdict(self, chat: Chat, user_id: int | None) -> Verdict:
        state = self.chats.get(access.chat_conversation(chat))
        return access.verdict(state, user_id, self.allowed | self.recorded_admins)

    async def started(self, watching: "asyncio.Task[None]") -> None:
        """Until the watch has read the bucket's current values (its failure raised here)."""
        ready = asyncio.create_task(self.ready.wait())
        await asyncio.wait({ready, watching}, return_when=asyncio.FIRST_COMPLETED)
        if not ready.done():
            ready.cancel()
            watching.result()  # the watch failed: its error; or it ended too early
            raise RuntimeError("the sc_auth watch ended before reading the bucket")

    async def watch(self, conn: bus.Connection, kv: KeyValue) -> None:
        """Follow the bucket until cancelled; `ready` is set once its current values are in."""
        watcher = await kv.watchall()
        try:
            async for entry in watcher:
                if entry is None:
                    self.ready.set()
                    continue
                await self._take(conn, entry)
        finally:
            with contextlib.suppress(nats.errors.Error):
                await watcher.stop()  # type: ignore[no-untyped-call]

    async def _take(self, conn: bus.Connection, entry: KeyValue.Entry) -> None:
        key, value = entry.key, entry.value
        if entry.operation in (KV_DEL, KV_PURGE):
            value = None
        where = f"{subjects.AUTH_BUCKET}/{key}"
        if key == subjects.AUTH_ADMINS_KEY:
            admins = None
            if value:
                admins = await bus.decoded(conn, ADMINS, value, where)
            self.recorded_admins = frozenset(admins.user_ids if admins else ())
            return
        conv = key.removeprefix(subjects.auth_chat_key(""))
        record = None
        if value:
            record = await bus.decoded(conn, CHAT_ACCESS, value, where)
        if record is None:
            self.chats.pop(conv, None)
            return
        self.chats[conv] = record.access
        log.info("chat %s is %s", conv, record.access)
