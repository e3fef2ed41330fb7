"""Fixtures shared by every test: a real nats-server per test and a bus client on it."""

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from shared.bus import BusAccess
from tests.kit.nats import TestBus, nats_server, open_bus


@pytest.fixture
async def nats_access(tmp_path: Path) -> AsyncIterator[BusAccess]:
    """A real nats-server with every role's login (the services' and `admin`)."""
    async with nats_server(tmp_path / "nats") as server:
        yield server.access


@pytest.fixture
async def bus(nats_access: BusAccess) -> AsyncIterator[TestBus]:
    async with open_bus(nats_access, in_partitions=4) as test_bus:
        yield test_bus


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    path = tmp_path / "workdir"
    path.mkdir()
    return path


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("chaos", "the chaos suite (tests/chaos)")
    group.addoption("--chaos-seed", type=int, default=7, help="the kill schedule's seed")
    group.addoption(
        "--chaos-s", type=float, default=40.0, help="how long users talk while kills go on"
    )
    group.addoption("--chaos-bad", type=int, default=2000, help="malformed payloads to send")
