"""Run services' real `run()` coroutines side by side with one stop Event."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import msgspec

from shared import config as config_file
from shared.bus import BusAccess
from shared.lifecycle import Run, Runtime


def make_runtime(raw: dict[str, Any], workdir: Path, access: BusAccess) -> Runtime:
    """A Runtime from a config table, as `stellaclaw run` builds it from the file.

    `access` holds every role's login (the kit's server), so each service logs in as itself.
    """
    config = config_file.parse(raw, {})
    secrets = tuple(config_file.secret_values(config))
    return Runtime(
        config=config, workdir=workdir, bus=msgspec.structs.replace(access, secrets=secrets)
    )


@asynccontextmanager
async def running(
    runtime: Runtime, *runs: Run, stop_timeout_s: float = 15.0
) -> AsyncIterator[None]:
    """Start every `run(runtime, stop)`; on exit set `stop` and wait for all to return.

    A run() that fails while the test is going re-raises when the block exits.
    """
    stop = asyncio.Event()
    tasks = [asyncio.create_task(run(runtime, stop)) for run in runs]
    try:
        yield
    finally:
        stop.set()
        async with asyncio.timeout(stop_timeout_s):
            results = await asyncio.gather(*tasks, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
