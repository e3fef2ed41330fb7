"""When a chat's progress panel may be sent or edited (SPEC §12.6 pacing), as pure state.

Times are seconds on the caller's monotonic clock (`loop.time()` in the sender, a plain number in
tests), passed into every call, so no method reads a clock. The sender drives one pacer per chat:

    pacer.offer(panel.render(latest, wall_now), is_final=latest.ending != "")  # each ShowProgress
    while (due := pacer.next_due(now)) is not None:        # wake at `due` or on the next offer
        ...wait until due...
        if not latest.ending:  # fresh elapsed; an ending keeps the time the turn ended
            pacer.offer(panel.render(latest, wall_now))
        if (text := pacer.take(now)) is not None:
            edit → pacer.sent(text, now)  ("message is not modified" counts as sent)
                 | 429 → pacer.paused(retry_after_s, now)
                 | other error → nothing: take() spent the slot, the text is retried a gap later

Rendering afresh at the due time is what refreshes the elapsed time: with no new state the pacer
asks for a refresh every REFRESH_S, and the new elapsed makes the text differ from what is shown.
"""

import math

PRIVATE_GAP_S = 1.0
GROUP_GAP_S = 4.0  # a group may get 20 messages a minute, edits included; leaves room for answers
REFRESH_S = 30.0  # the elapsed time, refreshed at most this often when nothing else changes


class PanelPacer:
    """One chat's panel traffic: at most one send or edit per gap, the newest state winning."""

    def __init__(self, *, gap_s: float, refresh_s: float = REFRESH_S) -> None:
        self._gap_s = gap_s
        self._refresh_s = refresh_s
        self._latest: str | None = None  # the newest text offered
        self._shown: str | None = None  # the text the chat shows, as far as we know
        self._is_final = False  # the latest text ends the turn: no refresh after it
        self._last_try_at = -math.inf  # the last send or edit attempted
        self._shown_at = -math.inf  # when `_shown` was confirmed
        self._paused_until = -math.inf  # a 429's retry_after

    @classmethod
    def for_chat(cls, *, is_group: bool) -> "PanelPacer":
        """A pacer with the gap SPEC §12.6 gives private chats (1 s) or groups (4 s)."""
        return cls(gap_s=GROUP_GAP_S if is_group else PRIVATE_GAP_S)

    @property
    def has_change(self) -> bool:
        """Whether the newest text offered is not on the panel yet."""
        return self._latest is not None and self._latest != self._shown

    def offer(self, text: str, *, is_final: bool = False) -> None:
        """The panel's newest text; it replaces any text not yet sent."""
        self._latest = text
        self._is_final = is_final

    def next_due(self, now: float) -> float | None:
        """When the next send or edit may go (≤ `now`: at once); None when nothing is owed."""
        if self.has_change:
            due = self._last_try_at + self._gap_s
        elif self._shown is not None and not self._is_final:
            due = max(self._shown_at + self._refresh_s, self._last_try_at + self._gap_s)
        else:
            return None
        return max(due, self._paused_until, now)

    def take(self, now: float) -> str | None:
        """The text to send now, if one is due; taking it spends the slot until the next gap."""
        due = self.next_due(now)
        if due is None or due > now or self._latest is None:
            return None
        self._last_try_at = now
        return self._latest

    def sent(self, text: str, now: float) -> None:
        """Telegram shows `text` (sent, edited, or "message is not modified")."""
        self._shown = text
        self._shown_at = now

    def paused(self, retry_after_s: float, now: float) -> None:
        """Telegram answered 429: nothing goes before `retry_after_s`; then the newest text does."""
        self._paused_until = max(self._paused_until, now + retry_after_s)

    def forget(self) -> None:
        """The panel is gone (deleted, or "message to edit not found"): the next text is sent
        anew, still paced."""
        self._shown = None
