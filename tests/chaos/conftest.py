"""The chaos suite's stack: `stellaclaw up` against the fakes, and a second instance of each
service beside it (`tests/kit/chaos.py`)."""

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.kit import chaos

USERS = chaos.ChaosPlan(conversations=64).users  # every test's users are among these


@pytest_asyncio.fixture
async def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[chaos.World]:
    async with chaos.world(tmp_path, monkeypatch.setenv, USERS) as running:
        yield running


@pytest.fixture
def seed(request: pytest.FixtureRequest) -> int:
    """`--chaos-seed`: the kill schedule and the model's choices."""
    return int(request.config.getoption("--chaos-seed"))
