"""Fixtures of the SSH runner tests: the kit's real in-process SSH server, and a directory on
it that stands for a remote workspace."""

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.kit.ssh import SshServer, ssh_server
from tests.kit.telegram_api import TelegramAPIServer, telegram_api


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[SshServer]:
    keys = tmp_path / "keys"
    keys.mkdir()
    async with ssh_server(keys) as found:
        yield found


@pytest.fixture
def remote_root(tmp_path: Path) -> Path:
    root = tmp_path / "remote"
    root.mkdir()
    return root


@pytest.fixture
async def telegram() -> AsyncIterator[TelegramAPIServer]:
    """The kit's Bot API server (one bot)."""
    async with telegram_api() as server:
        yield server
