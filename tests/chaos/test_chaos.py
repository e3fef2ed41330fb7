"""DESIGN §1 under faults: two instances of every service and the bus (the embedded
`nats-server`, or a node of a 3-node cluster) SIGKILLed on a seeded schedule, while users talk.

A short seeded run; `bench/chaos.py` runs the long one. `--chaos-seed` and `--chaos-s` (users go
on sending until that many seconds have passed) set the run here.
"""

import pytest

from tests.kit import chaos
from tests.kit.chaos_load import Tally

pytestmark = [pytest.mark.e2e, pytest.mark.chaos]


def report(title: str, tally: Tally) -> None:
    print(f"\n{title}\n{tally.table()}")  # noqa: T201 -- the run's table, read with -s


def assert_kept(tally: Tally, plan: chaos.ChaosPlan) -> None:
    assert tally.messages >= plan.conversations * plan.messages
    assert tally.lost == 0
    assert tally.duplicated == 0
    assert tally.side_effects_rerun == 0
    assert tally.answered_once + tally.shown_recoverable == tally.messages
    assert tally.tool_calls > 0  # a third of the turns ran a side effect


@pytest.mark.timeout(300)
async def test_every_message_is_answered_once_while_instances_and_the_bus_are_killed(
    world, seed, request
):
    duration_s = float(request.config.getoption("--chaos-s"))
    plan = chaos.ChaosPlan(seed=seed, conversations=16, messages=3, duration_s=duration_s)
    tally = await chaos.run(
        world.fakes.telegram,
        world.fakes.llm,
        world.fleet,
        plan,
        chaos.killer(plan, world.fleet, chaos.embedded_bus_killer(world.running)),
    )
    report(f"chaos, single node, seed {seed}", tally)
    assert_kept(tally, plan)
    assert sum(tally.kills.values()) >= duration_s // plan.kill_every_s // 2


@pytest.mark.timeout(420)
async def test_on_a_three_node_cluster_nothing_is_lost_while_nodes_and_instances_die(
    tmp_path, monkeypatch, seed, request
):
    duration_s = float(request.config.getoption("--chaos-s"))
    plan = chaos.ChaosPlan(seed=seed, conversations=12, messages=3, duration_s=duration_s)
    async with chaos.cluster_world(tmp_path, monkeypatch.setenv, plan.users) as (world, cluster):
        disturb = chaos.killer(plan, world.fleet, chaos.node_killer(cluster))
        tally = await chaos.run(world.fakes.telegram, world.fakes.llm, world.fleet, plan, disturb)
    report(f"chaos, 3-node cluster (R3), seed {seed}", tally)
    assert_kept(tally, plan)
    assert tally.kills.get("nats-node", 0) >= 1
