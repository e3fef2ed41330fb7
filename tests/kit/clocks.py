"""A clock a test moves by hand: `time()` and `call_later()` as the event loop has them, its
timers firing only inside `advance()`, in the order they are due."""

from collections.abc import Callable


class ManualTimer:
    def __init__(self, at: float, callback: Callable[[], object]) -> None:
        self.at = at
        self.callback = callback
        self.is_cancelled = False

    def cancel(self) -> None:
        self.is_cancelled = True


class ManualClock:
    """Meets `services.session.pacing.Clock`; time moves only when the test says so."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self.timers: list[ManualTimer] = []

    def time(self) -> float:
        return self.now

    def call_later(self, delay: float, callback: Callable[[], object], /) -> ManualTimer:
        timer = ManualTimer(self.now + delay, callback)
        self.timers.append(timer)
        return timer

    def advance(self, seconds: float) -> None:
        """Move on by `seconds`, firing each timer due by then at its own time (a timer a
        callback sets fires too, if it is due)."""
        until = self.now + seconds
        while due := [t for t in self.timers if not t.is_cancelled and t.at <= until]:
            timer = min(due, key=lambda t: t.at)
            self.timers.remove(timer)
            self.now = max(self.now, timer.at)
            timer.callback()
        self.timers = [t for t in self.timers if not t.is_cancelled]
        self.now = until

    @property
    def pending(self) -> int:
        """Timers set and neither fired nor cancelled."""
        return sum(not t.is_cancelled for t in self.timers)
