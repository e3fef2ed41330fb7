"""`stellaclaw up` serves the Prometheus endpoint on `metrics.bind`: every service's resident
memory, and a turn's, its model call's and its tool call's durations after one message."""

import asyncio
import socket

import httpx
import pytest

from tests.kit import stack as sc_stack
from tests.kit.llm_api import reply, tool_call
from tests.kit.waiting import eventually_async

pytestmark = pytest.mark.e2e
ADA = 5151


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def samples(text: str, name: str) -> dict[str, float]:
    """The samples of one metric: labels text → value."""
    found = {}
    for line in text.splitlines():
        if line.startswith(name + "{"):
            labels, _, number = line[len(name) :].rpartition(" ")
            found[labels] = float(number)
    return found


@pytest.mark.timeout(120)
async def test_up_serves_each_services_memory_and_a_turns_durations(tmp_path, monkeypatch):
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    async with sc_stack.fakes(tmp_path, monkeypatch.setenv, [ADA]) as world:
        with world.config.open("a", encoding="utf-8") as config:
            config.write(f'\n[metrics]\nbind = "127.0.0.1:{port}"\n')
        async with (
            sc_stack.stack(world.config, world.workdir) as running,
            httpx.AsyncClient() as client,
        ):
            await running.wait_ready(sc_stack.SERVICES)
            world.llm.script(tool_call("shell", {"command": "true"}), reply("Measured."))
            world.telegram.user_says(ADA, "hello")
            assert (await world.telegram.next_sent(ADA, timeout_s=45)).text == "Measured."

            text = await eventually_async(
                lambda: scraped_with(client, url, "stellaclaw_turn_duration_seconds_count"),
                30,
                what="a scrape with the turn",
            )
            alone = await standalone(world, client)
        world.llm.assert_done()
    assert 'stellaclaw_up{service="delivery"} 1' in alone.splitlines()
    assert "stellaclaw_turn_duration_seconds_count" not in alone  # it counts from its start
    lines = text.splitlines()
    assert 'stellaclaw_turn_duration_seconds_count{outcome="answered"} 1' in lines
    assert 'stellaclaw_model_call_duration_seconds_count{model="main"} 2' in lines
    assert 'stellaclaw_tool_duration_seconds_count{tool="shell",outcome="succeeded"} 1' in lines
    for service in sc_stack.SERVICES:
        assert f'stellaclaw_up{{service="{service}"}} 1' in lines
    memory = samples(text, "stellaclaw_process_resident_memory_bytes")
    by_service = {labels.split('"')[1]: value for labels, value in memory.items()}
    assert sorted(by_service) == sorted(sc_stack.SERVICES)
    assert all(20_000_000 < value < 1_000_000_000 for value in by_service.values()), by_service


async def standalone(world: sc_stack.Fakes, client: httpx.AsyncClient) -> str:
    """`stellaclaw metrics --bind` beside the stack (as a deployment runs it): one scrape, then
    SIGTERM, which it answers by exiting 0."""
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sc_stack.stellaclaw(),
        *("metrics", "--config", str(world.config), "--workdir", str(world.workdir)),
        *("--bind", f"127.0.0.1:{port}"),
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        text = await eventually_async(
            lambda: scraped_with(client, url, "stellaclaw_process_resident_memory_bytes"),
            30,
            what="a scrape of stellaclaw metrics",
        )
    finally:
        process.terminate()
        _, err = await asyncio.wait_for(process.communicate(), 15)
    assert process.returncode == 0, err.decode()
    assert "Traceback" not in err.decode()
    return text


async def scraped_with(client: httpx.AsyncClient, url: str, name: str) -> str | None:
    """The scrape's text once it has a sample of `name` (the endpoint may not listen yet)."""
    try:
        response = await client.get(url)
    except httpx.TransportError:
        return None
    return response.text if f"\n{name}{{" in response.text else None
