"""Waiting with deadlines: never sleep to wait for something in a test."""

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def eventually(
    check: Callable[[], T | None], timeout_s: float = 5.0, *, what: str = "condition"
) -> T:
    """Poll `check` until it returns something truthy, or fail after `timeout_s`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not (value := check()):
        if loop.time() > deadline:
            raise AssertionError(f"{what} not met within {timeout_s} s")
        await asyncio.sleep(0.02)
    return value


async def eventually_async(
    check: Callable[[], Awaitable[T | None]], timeout_s: float = 5.0, *, what: str = "condition"
) -> T:
    """Poll the coroutine `check` until it returns something truthy, or fail after `timeout_s`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not (value := await check()):
        if loop.time() > deadline:
            raise AssertionError(f"{what} not met within {timeout_s} s")
        await asyncio.sleep(0.02)
    return value
