"""The sandbox host of the tool tests: probed for real, so bubblewrap and cgroups are real."""

from collections.abc import AsyncIterator

import pytest

from services.tools.sandbox.host import SandboxHost
from tests.kit import sandbox


@pytest.fixture
async def sandbox_host() -> AsyncIterator[SandboxHost]:
    async with sandbox.probed() as found:
        yield found
