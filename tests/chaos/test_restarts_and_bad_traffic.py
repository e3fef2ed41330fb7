"""Rolling restarts (`stellaclaw restart`, and the second instances one by one) and a flood of
malformed payloads, each while users talk: nothing lost, nothing repeated, no service restarts
because of bad input."""

import asyncio

import pytest

from tests.kit import chaos
from tests.kit import stack as sc_stack
from tests.kit.chaos_load import Tally
from tests.kit.waiting import eventually_async

pytestmark = [pytest.mark.e2e, pytest.mark.chaos]


def assert_clean(tally: Tally) -> None:
    assert tally.lost == 0, tally.missing
    assert tally.duplicated == 0, tally.missing
    assert tally.duplicated_in_window == 0  # nothing was killed: no send went unrecorded
    assert tally.side_effects_rerun == 0
    assert tally.shown_recoverable == 0
    assert tally.answered_once == tally.messages


async def restart_cli(running: sc_stack.Stack, name: str) -> str:
    """`stellaclaw restart <name>`: its exit code must be 0; returns what it printed."""
    process = await asyncio.create_subprocess_exec(
        sc_stack.stellaclaw(),
        *("restart", name, "--config", str(running.workdir.parent / "stellaclaw.toml")),
        *("--workdir", str(running.workdir)),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, out.decode()
    return out.decode()


@pytest.mark.timeout(300)
async def test_a_rolling_restart_of_every_instance_under_load_loses_and_repeats_nothing(
    world, seed
):
    plan = chaos.ChaosPlan(seed=seed, conversations=12, messages=3, duration_s=20)
    printed: list[str] = []

    async def roll(load_done: asyncio.Event) -> None:
        for name in sc_stack.SERVICES:
            before = world.running.pid(name)
            printed.append(await restart_cli(world.running, name))
            assert world.running.pid(name) != before
            await world.fleet.restart_replica(name)
            await world.running.wait_instances(name, 2, timeout_s=60)

    others = {name: world.running.pid(name) for name in sc_stack.SERVICES}
    tally = await chaos.run(world.fakes.telegram, world.fakes.llm, world.fleet, plan, roll)
    print(f"\nrolling restart, seed {seed}\n{tally.table()}")  # noqa: T201 -- read with -s
    assert_clean(tally)
    assert len(printed) == len(sc_stack.SERVICES)
    for name, line in zip(sc_stack.SERVICES, printed, strict=True):
        assert line.startswith(f"restarted {name}: pid {others[name]} → ")


async def test_restart_names_what_it_cannot_restart(world):
    config = str(world.running.workdir.parent / "stellaclaw.toml")
    where = ("--config", config, "--workdir", str(world.running.workdir))
    code, err = await sc_stack.run_cli("restart", "sessions", *where)
    assert code == 2
    assert "restart: 'sessions' is not a service" in err
    code, err = await sc_stack.run_cli(
        "restart", "session", "--workdir", "/nonexistent", "--config", config
    )
    assert code == 2
    assert "no `stellaclaw up` runs session in /nonexistent" in err


@pytest.mark.timeout(300)
async def test_malformed_payloads_on_every_consumed_subject_are_counted_and_harm_nothing(
    world, seed, request
):
    payloads = int(request.config.getoption("--chaos-bad"))
    plan = chaos.ChaosPlan(seed=seed, conversations=8, messages=3, duration_s=15)
    running = world.running
    before = await chaos.bad_reported(running)
    pids = {name: running.pid(name) for name in sc_stack.SERVICES}
    replicas = {name: process.pid for name, process in world.fleet.replicas.items()}
    flood = chaos.flood(running, payloads, seed)
    tally = await chaos.run(world.fakes.telegram, world.fakes.llm, world.fleet, plan, flood)
    reported = await eventually_async(
        lambda: reported_all(running, before + payloads), timeout_s=120, what="every bad payload"
    )
    print(f"\nbad traffic, seed {seed}: {payloads} sent, {reported - before} reported")  # noqa: T201
    assert_clean(tally)
    assert reported - before == payloads
    assert {name: running.pid(name) for name in sc_stack.SERVICES} == pids
    assert {name: p.pid for name, p in world.fleet.replicas.items()} == replicas
    assert all(p.returncode is None for p in world.fleet.replicas.values())


async def reported_all(running: sc_stack.Stack, expected: int) -> int | None:
    found = await chaos.bad_reported(running)
    return found if found >= expected else None
