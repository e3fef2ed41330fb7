"""Fixtures shared by every test: a real nats-server per test and a bus client on it."""

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.kit.nats import TestBus, nats_server, open_bus


@pytest.fixture
async def nats_url(tmp_path: Path) -> AsyncIterator[str]:
    async with nats_server(tmp_path / "nats") as server:
        yield server.url


@pytest.fixture
async def bus(nats_url: str) -> AsyncIterator[TestBus]:
    async with open_bus(nats_url, in_partitions=4) as test_bus:
        yield test_bus


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    path = tmp_path / "workdir"
    path.mkdir()
    return path
