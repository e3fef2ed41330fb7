"""One active instance of a role per bot (`leader.<role>.<bot>` in KV `sc_lease`): the others
stand by and take over when the lease is released, or within its TTL when its holder died.

The holder renews the lease every RENEW_S; a renewal that fails (another instance holds it now)
stops its work at once. Its work gets a stop event of its own, so losing the lease and the
service stopping end it the same way.
"""

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import nats.errors
from nats.js.kv import KeyValue

from shared import leases
from shared.errors import TransientError
from shared.leases import Lease, Owner

STANDBY_POLL_S = 0.5  # how often a standby asks; it takes over this soon after the lease is free
Work = Callable[[asyncio.Event], Awaitable[None]]
log = logging.getLogger(__name__)


async def lead(kv: KeyValue, key: str, owner: Owner, stop: asyncio.Event, work: Work) -> None:
    """Run `work` whenever this instance holds `key`, until `stop`."""
    while not stop.is_set():
        held = await _acquire(kv, key, owner)
        if held is None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(STANDBY_POLL_S):
                    await stop.wait()
            continue
        log.info("active: holding %s", key)
        await _hold(kv, held, stop, work)


async def _acquire(kv: KeyValue, key: str, owner: Owner) -> Lease | None:
    try:
        return await leases.acquire(kv, key, owner)
    except (TimeoutError, nats.errors.Error) as exc:
        log.warning("cannot ask for %s: %r", key, exc)
        return None


async def _hold(kv: KeyValue, held: Lease, stop: asyncio.Event, work: Work) -> None:
    """Run `work` while the lease is renewed; release it when the work ends."""
    ended = asyncio.Event()
    running = asyncio.ensure_future(work(ended))
    stopping = asyncio.ensure_future(stop.wait())
    try:
        while not running.done():
            await asyncio.wait(
                {running, stopping}, timeout=leases.RENEW_S, return_when=asyncio.FIRST_COMPLETED
            )
            if stop.is_set():
                break
            if not running.done() and not await _renewed(kv, held):
                log.warning("lost %s to another instance; standing by", held.key)
                ended.set()
                await running
                return
        ended.set()
        await running
    finally:
        stopping.cancel()
        if not running.done():
            running.cancel()
    with contextlib.suppress(TimeoutError, nats.errors.Error):
        await leases.release(kv, held)


async def _renewed(kv: KeyValue, held: Lease) -> bool:
    """Renew; bus trouble counts as held (the TTL decides), another owner as lost."""
    try:
        return await leases.renew(kv, held)
    except (TimeoutError, nats.errors.Error, TransientError) as exc:
        log.warning("cannot renew %s: %r", held.key, exc)
        return True
