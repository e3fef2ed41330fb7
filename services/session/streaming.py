"""The answer as the model writes it (SPEC §12.7 streaming): the text of the current model call,
published whole (its first 4,096 UTF-16 units) at most once a second, as StreamText.

The first publish of a call waits until its text has streamed for a second, or until enough of
it came to be worth a draft: a short quick answer streams nothing. Text that turns out to come
with tool calls is a preamble: the call stops streaming (delivery clears the draft when the
answer comes). A retry starts the text again.
"""

import math
from collections.abc import Callable, Coroutine
from typing import Any

from services.session.pacing import Clock, Pacer
from shared.messages.outbound import StreamText

INTERVAL_S = 1.0  # SPEC §12.7: draft updates >= 1 s apart
FIRST_AFTER_S = 1.0
EARLY_CHARS = 300  # this much text is worth a draft before its first second is over
MAX_UNITS = 4096  # Telegram's message limit, in UTF-16 code units

Make = Callable[[str], StreamText]  # the next StreamText of the turn with this text
Send = Callable[[StreamText], Coroutine[Any, Any, None]]


def utf16_head(text: str, max_units: int = MAX_UNITS) -> str:
    """The longest start of `text` within `max_units` UTF-16 units (a pair is never split)."""
    if 2 * len(text) <= max_units:  # no character takes more than two units
        return text
    head = text.encode("utf-16-le")[: 2 * max_units]
    return head.decode("utf-16-le", errors="ignore")  # drops a half pair at the cut


class AnswerStream:
    """The streamed text of a turn's current model call."""

    def __init__(self, make: Make, send: Send, clock: Clock) -> None:
        self._make = make
        self._send = send
        self._clock = clock
        self._pacer = Pacer(self._publication, INTERVAL_S, clock)
        self._parts: list[str] = []
        self._chars = 0
        self._is_streaming = False
        self._is_full = False  # the text published reached MAX_UNITS: nothing more to show

    def begin(self) -> None:
        """A model call starts: its text streams."""
        self._pacer.drop()
        self._parts, self._chars = [], 0
        self._is_streaming, self._is_full = True, False

    def add(self, text: str) -> None:
        if not self._is_streaming or self._is_full or not text:
            return
        if not self._parts:
            self._pacer.hold_until = self._clock.time() + FIRST_AFTER_S
        self._parts.append(text)
        self._chars += len(text)
        if self._chars >= EARLY_CHARS:
            self._pacer.hold_until = -math.inf
        self._pacer.changed()

    def stop(self) -> None:
        """The call's text is a preamble, or the call is over: no more of it goes out."""
        self._is_streaming = False
        self._pacer.drop()

    async def finish(self, timeout_s: float) -> None:
        """The turn ends: nothing more streams; a publish in flight is waited for, so no
        draft follows the answer."""
        self.stop()
        await self._pacer.flush(timeout_s)
        self._pacer.stop()

    async def settled(self, timeout_s: float) -> None:
        await self._pacer.settled(timeout_s)

    def cut(self) -> None:
        """The turn was cut: cancel everything."""
        self._is_streaming = False
        self._pacer.stop()

    def _publication(self) -> Coroutine[Any, Any, None]:
        """The publish of the text as it is now (a new call may start before it runs)."""
        text = "".join(self._parts)
        self._parts = [text]
        head = utf16_head(text)
        self._is_full = len(head) < len(text)
        return self._send(self._make(head))
