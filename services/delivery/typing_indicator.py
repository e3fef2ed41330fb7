"""`typing…` in a chat while its turn runs (SPEC §12.5).

ShowTyping starts one task per turn: `sendChatAction typing` after `delay_s` and every
`interval_s`, until the turn's answer (a SendReply with the same turn id) ends it, the service
stops, or `cap_s` passes. The tasks live in the TaskGroup that `run()` awaits, so none outlives
the service.
"""

import asyncio
import logging
from typing import Protocol

from services.delivery.bot_api import RejectedError, SendChatAction
from shared.errors import TransientError

INTERVAL_S = 4.0  # Telegram shows the action for 5 s, or until the bot's next message
# A turn answered sooner would show typing for no one (the answer clears it), at the cost of a Bot
# API call in the way of the answer: typing starts once the turn has run this long.
DELAY_S = 0.5
CAP_S = 600.0  # a turn whose answer never comes does not type forever
log = logging.getLogger(__name__)


class ChatActions(Protocol):
    """The part of the Bot API typing needs (met by `bot_api.TelegramApi`)."""

    async def send_chat_action(self, request: SendChatAction) -> None: ...


class TypingIndicators:
    """The running typing loops, one per turn id."""

    def __init__(
        self,
        api: ChatActions,
        tasks: asyncio.TaskGroup,
        *,
        interval_s: float = INTERVAL_S,
        cap_s: float = CAP_S,
        delay_s: float = DELAY_S,
    ) -> None:
        self._api = api
        self._tasks = tasks
        self._interval_s = interval_s
        self._cap_s = cap_s
        self._delay_s = delay_s
        self._ends: dict[str, asyncio.Event] = {}

    @property
    def turns(self) -> frozenset[str]:
        """The turns typing now."""
        return frozenset(self._ends)

    def start(self, turn_id: str, request: SendChatAction) -> None:
        """Type for `turn_id` until `end`; a turn already typing is left as it is."""
        if turn_id in self._ends:
            return
        ended = asyncio.Event()
        self._ends[turn_id] = ended
        self._tasks.create_task(self._show(turn_id, request, ended), name=f"typing {turn_id}")

    def end(self, turn_id: str) -> None:
        if ended := self._ends.get(turn_id):
            ended.set()

    def end_all(self) -> None:
        for ended in self._ends.values():
            ended.set()

    async def _show(self, turn_id: str, request: SendChatAction, ended: asyncio.Event) -> None:
        try:
            async with asyncio.timeout(self._cap_s):
                await _wait(ended, self._delay_s)
                while not ended.is_set() and await self._send(request):
                    await _wait(ended, self._interval_s)
        except TimeoutError:
            log.info(
                "typing for turn %s stopped after %.0f s without an answer", turn_id, self._cap_s
            )
        finally:
            del self._ends[turn_id]

    async def _send(self, request: SendChatAction) -> bool:
        """Show the action once; False when Telegram refuses it for good."""
        try:
            await self._api.send_chat_action(request)
        except TransientError as exc:  # typing is cosmetic: the next interval tries again
            log.debug("typing not shown: %s", exc)
        except RejectedError as exc:
            log.warning("typing refused, not retried for this turn: %s", exc)
            return False
        return True


async def _wait(event: asyncio.Event, timeout_s: float) -> None:
    """Until `event` is set or `timeout_s` passes, whichever is first."""
    try:
        async with asyncio.timeout(timeout_s):
            await event.wait()
    except TimeoutError:
        return
