"""The fake OpenAI server and an HTTP client, for the provider and model-call tests."""

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.kit.llm_api import OpenAIChatServer, llm_api


@pytest.fixture
async def server() -> AsyncIterator[OpenAIChatServer]:
    async with llm_api() as fake:
        yield fake


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=httpx.Timeout(5.0)) as client:
        yield client
