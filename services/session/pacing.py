"""Coalescing at the source: a state that changes often goes on the bus at most once per
interval, the newest state winning (SPEC §12.6's pacing, DESIGN §4: a turn puts a few updates a
second on the bus at most). Publishes run one at a time in a task of their own, so they reach
the bus in order and never hold up the turn; a failed one is logged, and the next carries the
whole state anyway.
"""

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

log = logging.getLogger(__name__)


class Timer(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    """The event loop's time and timers (met by the running loop; tests pass a manual one)."""

    def time(self) -> float: ...

    def call_later(self, delay: float, callback: Callable[[], object], /) -> Timer: ...


Publish = Callable[[], Coroutine[Any, Any, None]]  # builds the newest state when called


class Pacer:
    """Publishes a changing state at most once per `interval_s`, and never before `hold_until`;
    a change marked `at_once` goes as soon as the publish in flight is done."""

    def __init__(self, publish: Publish, interval_s: float, clock: Clock) -> None:
        self._publish = publish
        self._interval_s = interval_s
        self._clock = clock
        self.hold_until = -math.inf  # no publish before this (loop time), unless at once
        self._sent_at = -math.inf  # when the last publish started
        self._is_due = False  # a change waits to be published
        self._is_urgent = False
        self._timer: Timer | None = None
        self._timer_at = math.inf
        self._task: asyncio.Task[None] | None = None

    def changed(self, *, at_once: bool = False) -> None:
        """The state changed: publish it when the pace allows."""
        self._is_due = True
        self._is_urgent = self._is_urgent or at_once
        self._kick()

    def drop(self) -> None:
        """Forget the change not yet published (a publish in flight goes on)."""
        self._is_due = self._is_urgent = False
        self._cancel_timer()

    async def flush(self, timeout_s: float) -> None:
        """Publish the change waiting now, and wait (up to `timeout_s`) until all are out."""
        if self._is_due:
            self.changed(at_once=True)
        await self.settled(timeout_s)

    async def settled(self, timeout_s: float) -> None:
        """Wait (up to `timeout_s`) until no publish is in flight; a change still paced waits."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                while self._task is not None:  # a publish ending may start the next
                    await asyncio.wait([self._task])  # its outcome is the done callback's

    def stop(self) -> None:
        """The turn is over or cut: nothing more goes out, the publish in flight is cancelled."""
        self.drop()
        if self._task is not None:
            self._task.cancel()

    def _kick(self) -> None:
        if not self._is_due or self._task is not None:
            return  # the publish in flight kicks again when it is done
        now = self._clock.time()
        due_at = max(self._sent_at + self._interval_s, self.hold_until)
        if self._is_urgent:
            due_at = now
        if due_at > now:
            if due_at < self._timer_at:  # sooner than the timer set (a hold was lifted)
                self._cancel_timer()
                self._timer = self._clock.call_later(due_at - now, self._fire)
                self._timer_at = due_at
            return
        self._cancel_timer()
        self._is_due = self._is_urgent = False
        self._sent_at = now
        self._task = asyncio.create_task(self._publish())
        self._task.add_done_callback(self._finished)

    def _fire(self) -> None:
        self._timer, self._timer_at = None, math.inf
        self._kick()

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._task = None
        if not task.cancelled() and (error := task.exception()) is not None:
            log.error("a paced publish failed: %r", error)
        self._kick()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._timer_at = None, math.inf
