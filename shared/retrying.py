"""Requests to a replicated stream or bucket while it elects a leader (a NATS node died): the
server stores nothing and nobody answers (`NoStreamResponseError`, `NoRespondersError`), so the
request is tried again, with backoff, until `retry_s` has passed. A timeout is not retried here:
a write may have been stored without its answer reaching us."""

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from nats.errors import NoRespondersError
from nats.js.errors import NoStreamResponseError

RETRY_S = 30.0
T = TypeVar("T")


async def through_elections(op: Callable[[], Awaitable[T]], retry_s: float = RETRY_S) -> T:
    """`op()`, tried again while no leader answers, for up to `retry_s`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + retry_s
    delay_s = 0.05
    while True:
        try:
            return await op()
        except (NoStreamResponseError, NoRespondersError):
            if loop.time() + delay_s > deadline:
                raise
            await asyncio.sleep(delay_s)
            delay_s = min(delay_s * 2, 2.0)
