"""Coalescing at the source: at most one publish per interval, the newest state winning, one
publish at a time, never blocking the caller."""

import asyncio
import logging

from services.session.pacing import Pacer
from tests.kit.clocks import ManualClock


class Published:
    """The state a pacer publishes, and what went out when."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.value = 0
        self.sent: list[tuple[float, int]] = []
        self.gate: asyncio.Event | None = None  # set: publishes wait for it
        self.failures = 0  # the next publishes that fail

    def publish(self):
        return self._send(self.value)  # the state as it is when the publish starts

    async def _send(self, value: int) -> None:
        if self.gate is not None:
            await self.gate.wait()
        if self.failures:
            self.failures -= 1
            raise RuntimeError("the bus is down")
        self.sent.append((self.clock.time(), value))


def pacer_of(published: Published, interval_s: float = 0.5) -> Pacer:
    return Pacer(published.publish, interval_s, published.clock)


async def test_changes_within_the_interval_go_out_once_with_the_newest_state():
    clock = ManualClock(now=100.0)
    state = Published(clock)
    pacer = pacer_of(state)
    state.value = 1
    pacer.changed()  # nothing went out lately: at once
    await pacer.settled(1.0)
    for value in (2, 3, 4):
        state.value = value
        pacer.changed()
    await pacer.settled(1.0)
    assert state.sent == [(100.0, 1)]
    clock.advance(0.49)
    await pacer.settled(1.0)
    assert len(state.sent) == 1
    clock.advance(0.01)
    await pacer.settled(1.0)
    assert state.sent == [(100.0, 1), (100.5, 4)]
    clock.advance(5.0)  # nothing changed since: nothing more
    await pacer.settled(1.0)
    assert len(state.sent) == 2


async def test_a_change_at_once_skips_the_interval():
    clock = ManualClock(now=100.0)
    state = Published(clock)
    pacer = pacer_of(state)
    pacer.changed()
    await pacer.settled(1.0)
    state.value = 7
    pacer.changed(at_once=True)
    await pacer.settled(1.0)
    assert state.sent == [(100.0, 0), (100.0, 7)]
    assert clock.pending == 0


async def test_one_publish_at_a_time_in_order_and_the_caller_never_waits():
    clock = ManualClock(now=100.0)
    state = Published(clock)
    state.gate = asyncio.Event()
    pacer = pacer_of(state)
    state.value = 1
    pacer.changed()  # returns at once although the publish hangs
    state.value = 2
    pacer.changed(at_once=True)  # waits for the one in flight
    state.value = 3
    state.gate.set()
    await pacer.flush(1.0)
    assert [value for _, value in state.sent] == [1, 3]  # the second built when it started


async def test_a_hold_delays_the_first_publish_and_lifting_it_publishes_sooner():
    clock = ManualClock(now=100.0)
    state = Published(clock)
    pacer = pacer_of(state, interval_s=1.0)
    pacer.hold_until = 101.0
    pacer.changed()
    clock.advance(0.5)
    await pacer.settled(1.0)
    assert state.sent == []
    pacer.hold_until = -1.0
    pacer.changed()
    await pacer.settled(1.0)
    assert state.sent == [(100.5, 0)]
    assert clock.pending == 0  # the held timer is gone


async def test_a_dropped_change_never_goes_out():
    clock = ManualClock(now=100.0)
    state = Published(clock)
    pacer = pacer_of(state)
    pacer.changed()
    await pacer.settled(1.0)
    pacer.changed()
    pacer.drop()
    clock.advance(1.0)
    await pacer.flush(1.0)
    assert len(state.sent) == 1


async def test_a_failed_publish_is_logged_and_the_next_goes_out(caplog):
    clock = ManualClock(now=100.0)
    state = Published(clock)
    state.failures = 1
    pacer = pacer_of(state)
    with caplog.at_level(logging.ERROR):
        pacer.changed()
        await pacer.settled(1.0)
    assert "the bus is down" in caplog.text
    state.value = 5
    pacer.changed()
    clock.advance(0.5)
    await pacer.settled(1.0)
    assert state.sent == [(100.5, 5)]


async def test_stop_cancels_the_publish_in_flight_and_what_waits():
    clock = ManualClock(now=100.0)
    state = Published(clock)
    state.gate = asyncio.Event()
    pacer = pacer_of(state)
    pacer.changed()
    pacer.changed(at_once=True)
    pacer.stop()
    state.gate.set()
    await pacer.settled(1.0)
    clock.advance(1.0)
    await pacer.settled(1.0)
    assert state.sent == []
