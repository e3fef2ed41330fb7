"""Fixtures of the kit's own tests: the fake Bot API server and an aiogram bot pointed at it."""

from collections.abc import AsyncIterator

import pytest
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer as AiogramServer

from tests.kit.telegram_api import TelegramAPIServer, telegram_api


@pytest.fixture
async def telegram() -> AsyncIterator[TelegramAPIServer]:
    async with telegram_api() as server:
        yield server


@pytest.fixture
async def bot(telegram: TelegramAPIServer) -> AsyncIterator[Bot]:
    session = AiohttpSession(api=AiogramServer.from_base(telegram.base_url), timeout=10)
    bot = Bot(telegram.token, session=session)
    try:
        yield bot
    finally:
        await session.close()
