"""What the test kit's Telegram server refuses for the chat a call names: its state, flood control.

A chat a test marks as blocked by its user (`block_chat`), unknown (`forget_chat`) or one that
removed the bot (`kick_bot`) refuses every later call naming it, with Telegram's words.

Flood control is off until `enforce_limits`. It follows Telegram's bot FAQ: about one message a
second to a private chat after a short burst, 20 a minute to a group, about 30 a second in all.
Beyond that a call gets 429 `Too Many Requests: retry after N`, with `parameters.retry_after` N the
whole seconds until the limits let it through (at least 1). Sends, edits and uploads count, an
album once (Telegram does not document how albums count). Drafts, chat actions, reactions and
deletions do not count, as Telegram documents no limit for them. A call that passes flood control
uses its budget even when Telegram then refuses its content. One clock times everything, the
loop's monotonic time unless a test passes its own.
"""

import math
from collections import defaultdict, deque
from collections.abc import Callable
from typing import Final

import msgspec

from tests.kit.telegram_files import UPLOAD_FIELDS
from tests.kit.telegram_wire import BotApiError, Fault

LIMITED: Final = frozenset({"sendmessage", "editmessagetext", "sendmediagroup", *UPLOAD_FIELDS})
BLOCKED: Final = Fault(status=403, description="Forbidden: bot was blocked by the user")
CHAT_NOT_FOUND: Final = Fault(status=400, description="Bad Request: chat not found")
MINUTE_S: Final = 60.0


class FloodLimits(msgspec.Struct, frozen=True, kw_only=True):
    """Telegram's limits on one bot's sends ("My bot is hitting limits, how do I avoid this?")."""

    per_private_chat_per_s: float = 1.0
    private_burst: int = 3  # sends a private chat takes at once before the pace applies
    per_group_per_min: int = 20
    global_per_s: int = 30


def kicked(chat: dict[str, object]) -> Fault:
    """The refusal once a group, supergroup or channel removed the bot."""
    if chat["type"] == "private":
        raise ValueError(f"chat {chat['id']} is private: its user blocks the bot (block_chat)")
    return Fault(status=403, description=f"Forbidden: bot was kicked from the {chat['type']} chat")


class ChatGate:
    """The refusals set per chat, the flood budgets, and what the bot was refused or let do."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.limits: FloodLimits | None = None  # None: no flood control
        self.refusals: dict[int, Fault] = {}  # by chat: blocked, not found, bot kicked
        self.too_many: list[int | None] = []  # the chat of every 429 answered, in order
        self.accepted: defaultdict[int, list[float]] = defaultdict(list)  # send and edit times
        self._private: dict[int, tuple[float, float]] = {}  # chat: (sends left, at)
        self._groups: defaultdict[int, deque[float]] = defaultdict(deque)  # the last minute's
        self._overall: deque[float] = deque()  # the last second's sends to any chat

    def admit(self, method: str, chat_id: int | None) -> None:
        """Refuse a call to a chat the test marked, or one beyond the flood limits."""
        if chat_id is None:
            return
        refusal = self.refusals.get(chat_id)
        if refusal is not None:
            raise BotApiError(refusal.status, refusal.description)
        if self.limits is not None and method.lower() in LIMITED:
            self._take(chat_id, self.limits, self.clock())

    def passed(self, method: str, chat_id: int | None) -> None:
        """Note a send or edit Telegram accepted."""
        if chat_id is not None and method.lower() in LIMITED:
            self.accepted[chat_id].append(self.clock())

    def refused(self, chat_id: int | None, fault: Fault) -> None:
        if fault.status == 429:
            self.too_many.append(chat_id)

    def _take(self, chat_id: int, limits: FloodLimits, now: float) -> None:
        """Use one send of the chat's budget and the bot's, or refuse until both allow one."""
        _forget_before(self._overall, now - 1.0)
        overall = _wait(self._overall, limits.global_per_s, 1.0, now)
        wait = max(self._chat_wait(chat_id, limits, now), overall)
        if wait <= 0:
            self._overall.append(now)
            self._use(chat_id, limits, now)
            return
        retry_after = max(1, math.ceil(wait))
        raise BotApiError(429, f"Too Many Requests: retry after {retry_after}", retry_after)

    def _chat_wait(self, chat_id: int, limits: FloodLimits, now: float) -> float:
        """Seconds until the chat's budget allows one more send; 0 when it does now."""
        if chat_id > 0:
            left = self._left(chat_id, limits, now)
            return 0.0 if left >= 1 else (1 - left) / limits.per_private_chat_per_s
        window = self._groups[chat_id]
        _forget_before(window, now - MINUTE_S)
        return _wait(window, limits.per_group_per_min, MINUTE_S, now)

    def _use(self, chat_id: int, limits: FloodLimits, now: float) -> None:
        if chat_id > 0:
            self._private[chat_id] = (self._left(chat_id, limits, now) - 1, now)
        else:
            self._groups[chat_id].append(now)

    def _left(self, chat_id: int, limits: FloodLimits, now: float) -> float:
        """The sends a private chat may take now: a burst, refilled at the chat's pace."""
        left, at = self._private.get(chat_id, (float(limits.private_burst), now))
        return min(float(limits.private_burst), left + (now - at) * limits.per_private_chat_per_s)


def _forget_before(window: deque[float], cutoff: float) -> None:
    while window and window[0] <= cutoff:
        window.popleft()


def _wait(window: deque[float], size: int, span_s: float, now: float) -> float:
    """Seconds until the sends of the last `span_s` are fewer than `size` (the oldest leave)."""
    return window[len(window) - size] + span_s - now if len(window) >= size > 0 else 0.0
