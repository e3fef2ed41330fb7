"""The chaos run (DESIGN §1): users talk while a seeded schedule SIGKILLs service instances and
the bus; prints what was lost, repeated or re-run.

`stellaclaw up` (five services and the embedded `nats-server`) runs against the test kit's Telegram
Bot API and model servers in this process, with a second instance of every service beside it.
The fake model answers each message in 50 to 500 ms; a third of the messages first get a `shell`
call with a side effect (`echo <call id> >> effects.log`). Every `--kill-every-s` one target is
SIGKILLed: any of the ten service instances (and with `--kill-bus` the nats-server). Each user
sends the next message once the previous one was answered (or shown as failed).

    python bench/chaos.py [--seed 1] [--conversations 200] [--messages 5] [--kill-every-s 2]
        [--kill-bus] [--cluster] [--bad 10000] [--keep DIR]

With `--cluster` the stack runs on a 3-node cluster (`bus.replicas = 3`), and with `--kill-bus`
a killed node is started again 1.5 s later. `--bad N` sends N random and truncated payloads on
every consumed subject during the run; each must come back as one `bad_message` event.
"""

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.kit import chaos  # noqa: E402 -- after the path is set


def setenv(name: str, value: str) -> None:
    os.environ[name] = value  # noqa: TID251 -- the children's environment (`up` inherits it)


def plan_of(args: argparse.Namespace) -> chaos.ChaosPlan:
    return chaos.ChaosPlan(
        seed=args.seed,
        conversations=args.conversations,
        messages=args.messages,
        kill_every_s=args.kill_every_s,
        kill_bus=args.kill_bus,
        answer_timeout_s=120.0,
    )


async def single_node(args: argparse.Namespace, root: Path) -> None:
    plan = plan_of(args)
    async with chaos.world(root, setenv, plan.users) as world:
        bus_killer = chaos.embedded_bus_killer(world.running)
        await measured(args, plan, world, bus_killer, "single node (embedded nats-server)")


async def cluster(args: argparse.Namespace, root: Path) -> None:
    plan = plan_of(args)
    async with chaos.cluster_world(root, setenv, plan.users) as (world, nodes):
        await measured(args, plan, world, chaos.node_killer(nodes), "3-node cluster (R3)")


async def measured(
    args: argparse.Namespace,
    plan: chaos.ChaosPlan,
    world: chaos.World,
    bus_killer: chaos.BusKiller,
    title: str,
) -> None:
    started = time.monotonic()
    disturb = chaos.killer(plan, world.fleet, bus_killer)
    if args.bad:
        disturb = chaos.together(disturb, chaos.flood(world.running, args.bad, args.seed))
    before = await chaos.bad_reported(world.running)
    tally = await chaos.run(world.fakes.telegram, world.fakes.llm, world.fleet, plan, disturb)
    tally.bad_payloads = args.bad
    tally.bad_reported = await chaos.bad_reported(world.running) - before
    took_s = time.monotonic() - started
    bus = "killed too" if args.kill_bus else "not killed"
    print(f"{title}, bus {bus}, seed {args.seed}, {took_s:.0f} s")
    print(tally.table())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--conversations", type=int, default=200)
    parser.add_argument("--messages", type=int, default=5)
    parser.add_argument("--kill-every-s", type=float, default=2.0)
    parser.add_argument(
        "--kill-bus", action="store_true", help="the nats-server (a cluster node) is a target too"
    )
    parser.add_argument("--cluster", action="store_true", help="a 3-node cluster, R3 streams")
    parser.add_argument("--bad", type=int, default=0, help="malformed payloads during the run")
    parser.add_argument("--keep", type=Path, default=None, help="keep the workdir and logs here")
    args = parser.parse_args()
    run = cluster if args.cluster else single_node
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=False)
        asyncio.run(run(args, args.keep))
        return
    with tempfile.TemporaryDirectory(prefix="stellaclaw-chaos-") as folder:
        asyncio.run(run(args, Path(folder)))


if __name__ == "__main__":
    main()
