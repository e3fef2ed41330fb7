"""The chaos suite's harness: two instances of every service, a seeded killer, bad traffic.

`stellaclaw up` runs the first instance of each service (and restarts it when it dies); the
`Fleet` runs a second one of each beside it, as `stellaclaw run <service>` would on another host,
and starts it again a second after it dies. The killer SIGKILLs one seeded-random target every
`kill_every_s`: a service instance, or the bus (the embedded `nats-server`, which the launcher
restarts; or one node of a cluster, which `restart_node` brings back). Used by `tests/chaos/` and
`bench/chaos.py`.
"""

import asyncio
import contextlib
import os
import random
import signal
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import msgspec
import nats.errors
from nats.aio.client import Client

from shared import lifecycle, subjects
from shared.bus import BusAccess
from tests.kit.chaos_load import ChaosModel, Ledger, Tally, Until, converse, count
from tests.kit.llm_api import OpenAIChatServer
from tests.kit.nats_cluster import KitCluster, nats_cluster
from tests.kit.stack import SERVICES, Fakes, Stack, children_of, fakes, spawn_replica, stack
from tests.kit.telegram_api import TelegramAPIServer

REPLICA_RESTART_S = 1.0
BusKiller = Callable[[], Awaitable[str]]


class ChaosPlan(msgspec.Struct, frozen=True, kw_only=True):
    seed: int = 1
    conversations: int = 20
    messages: int = 3
    kill_every_s: float = 2.0
    kill_bus: bool = True
    answer_timeout_s: float = 90.0
    duration_s: float = 0.0  # users go on sending past `messages` until this has passed
    first_user: int = 10_000

    @property
    def users(self) -> list[int]:
        return [self.first_user + number for number in range(self.conversations)]


class Fleet:
    """Every service instance of a running stack, by target name (`session#0`, `session#1`)."""

    def __init__(self, running: Stack, config: Path, services: Sequence[str] = SERVICES) -> None:
        self.running = running
        self.config = config
        self.services = tuple(services)
        self.replicas: dict[str, asyncio.subprocess.Process] = {}
        self.kills: Counter[str] = Counter()
        self._keeping = True
        self._restarting: set[str] = set()

    @property
    def targets(self) -> list[str]:
        return [f"{name}#{slot}" for name in self.services for slot in (0, 1)]

    async def start(self) -> None:
        for name in self.services:
            await self._start_replica(name)

    async def _start_replica(self, name: str) -> None:
        owner_id = lifecycle.default_owner_id(self.running.workdir, name, 1)
        self.replicas[name] = await spawn_replica(self.running, name, self.config, owner_id)

    async def restart_replica(self, name: str) -> None:
        """SIGTERM the second instance, let it drain, start it again and wait for it."""
        self._restarting.add(name)
        try:
            process = self.replicas[name]
            if process.returncode is None:
                process.terminate()
                await asyncio.wait_for(process.wait(), 60)
            await self._start_replica(name)
        finally:
            self._restarting.discard(name)

    async def keep(self) -> None:
        """Start a replica again a second after it died, while the run lasts."""
        while self._keeping:
            for name, process in list(self.replicas.items()):
                if (
                    process.returncode is not None
                    and self._keeping
                    and name not in self._restarting
                ):
                    await asyncio.sleep(REPLICA_RESTART_S)
                    await self._start_replica(name)
            await asyncio.sleep(0.1)

    def kill(self, target: str) -> bool:
        """SIGKILL one instance; False when it was not running (restarting, say)."""
        name, slot = target.split("#")
        try:
            pid = self.running.pid(name) if slot == "0" else self.replicas[name].pid
            if slot == "1" and self.replicas[name].returncode is not None:
                return False
            os.kill(pid, signal.SIGKILL)
        except (OSError, ValueError):
            return False
        self.kills[name] += 1
        return True

    async def stop(self) -> None:
        self._keeping = False
        for process in self.replicas.values():
            if process.returncode is None:
                process.terminate()
        for process in self.replicas.values():
            try:
                await asyncio.wait_for(process.wait(), 30)
            except TimeoutError:
                process.kill()
                await process.wait()


class World(msgspec.Struct, frozen=True, kw_only=True):
    fakes: Fakes
    running: Stack
    fleet: Fleet


@asynccontextmanager
async def world(
    root: Path, setenv: Callable[[str, str], None], users: Sequence[int]
) -> AsyncIterator[World]:
    """`stellaclaw up` against the fakes, with a second instance of each service beside it."""
    async with fakes(root, setenv, users) as faked, doubled(faked) as running:
        yield running


@asynccontextmanager
async def cluster_world(
    root: Path, setenv: Callable[[str, str], None], users: Sequence[int]
) -> AsyncIterator[tuple[World, KitCluster]]:
    """The same on a 3-node cluster: `bus.url` lists the nodes, `bus.replicas = 3`, and every
    service logs in with its own role's password from `[bus.services.<role>]`."""
    async with (
        nats_cluster(root / "cluster") as cluster,
        fakes(root, setenv, users) as faked,
    ):
        with faked.config.open("a", encoding="utf-8") as config:
            config.write(cluster_bus(cluster))
        async with doubled(faked, cluster.access) as running:
            yield running, cluster


@asynccontextmanager
async def doubled(faked: Fakes, external: BusAccess | None = None) -> AsyncIterator[World]:
    """`up` on the fakes' config, and the second instances, each service answering twice."""
    async with stack(faked.config, faked.workdir) as running:
        running.external = external
        await running.wait_ready(SERVICES)
        fleet = Fleet(running, faked.config)
        await fleet.start()
        try:
            for name in SERVICES:
                await running.wait_instances(name, 2)
            yield World(fakes=faked, running=running, fleet=fleet)
        finally:
            await fleet.stop()


def cluster_bus(cluster: KitCluster) -> str:
    """The rest of the config's `[bus]` table (the last one `write_config` writes)."""
    lines = [f'url = "{",".join(cluster.urls)}"', "replicas = 3"]
    for role, password in cluster.passwords.items():
        lines += [f"[bus.services.{role}]", f'user = "{role}"', f'password = "{password}"']
    return "\n".join(lines) + "\n"


def node_killer(cluster: KitCluster, down_s: float = 1.5) -> BusKiller:
    """SIGKILL a random node, and start it again `down_s` later (one node down at a time)."""
    rng = random.Random(len(cluster.urls))

    async def kill() -> str:
        index = rng.randrange(len(cluster.nodes))
        await cluster.kill(index)
        await asyncio.sleep(down_s)
        await cluster.restart(index)
        return "nats-node"

    return kill


def embedded_bus_killer(running: Stack) -> BusKiller:
    """SIGKILL the `nats-server` that `stellaclaw up` started (it restarts it)."""

    async def kill() -> str:
        for pid, name in children_of(running.process.pid).items():
            if name == "nats-server":
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                return "nats-server"
        return ""

    return kill


Disturbance = Callable[[asyncio.Event], Coroutine[Any, Any, None]]


def killer(plan: ChaosPlan, fleet: Fleet, bus_killer: BusKiller | None) -> Disturbance:
    """One kill every `kill_every_s`, targets chosen by the seed, until the load is done."""

    async def kill(load_done: asyncio.Event) -> None:
        rng = random.Random(plan.seed)
        targets = fleet.targets + (["bus"] if bus_killer and plan.kill_bus else [])
        while not load_done.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(load_done.wait(), plan.kill_every_s)
                return
            target = rng.choice(targets)
            if target == "bus" and bus_killer is not None:
                if killed := await bus_killer():
                    fleet.kills[killed] += 1
            else:
                fleet.kill(target)

    return kill


async def run(
    telegram: TelegramAPIServer,
    llm: OpenAIChatServer,
    fleet: Fleet,
    plan: ChaosPlan,
    disturb: Disturbance,
) -> Tally:
    """The load while `disturb` runs; the tally once every conversation settled, the
    disturbance ended and delivery drained."""
    llm.respond_with(ChaosModel(plan.seed))
    ledger = Ledger(telegram)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + plan.duration_s if plan.duration_s else 0.0
    until = Until(messages=plan.messages, deadline=deadline, timeout_s=plan.answer_timeout_s)
    sent: dict[int, asyncio.Task[int]] = {}
    load_done = asyncio.Event()
    following = asyncio.create_task(ledger.follow())
    keeping = asyncio.create_task(fleet.keep())
    disturbing = asyncio.create_task(disturb(load_done))
    try:
        async with asyncio.TaskGroup() as group:
            for user in plan.users:
                sent[user] = group.create_task(converse(telegram, ledger, user, until))
        load_done.set()
        await disturbing
        await settle(fleet.running)
    finally:
        for task in (following, disturbing, keeping):
            task.cancel()
    tally = Tally(kills=dict(fleet.kills))
    counts = {user: task.result() for user, task in sent.items()}
    return count(tally, ledger, counts, plan.seed, fleet.running.workdir)


async def settle(running: Stack, timeout_s: float = 120.0) -> None:
    """Delivery has sent (and recorded) every output: late answers are counted too. A fresh
    login, since the bus may have been restarted under the old one."""
    if running.nc is not None:
        await running.nc.close()
    running.nc = await running.connect("admin")
    with contextlib.suppress(TimeoutError):
        await running.wait_drained(
            subjects.OUT_STREAM, subjects.durable("delivery", "telegram"), timeout_s
        )


async def bad_traffic(running: Stack, payloads: int, seed: int) -> int:
    """Random and truncated payloads on every subject a service consumes from a stream; returns
    how many were stored (each must come back as one `bad_message` event). A publish the bus
    does not answer (it is being restarted) is tried again with the same id."""
    rng = random.Random(seed)
    good = b'{"kind": "message_received", "conversation_id": "tg_990001", "text": "hello"}'
    number = 0
    while number < payloads:
        if number % 2:
            payload = good[: rng.randrange(1, len(good))]
        else:
            payload = rng.randbytes(rng.randrange(0, 200))
        conv = f"tg_99{number}"  # one a subject: a wake's subject holds one message at a time
        subject = (
            subjects.inbound("telegram", conv),
            subjects.wake(f"{conv}_fg1"),
            subjects.tool_request("local", f"{conv}_fg1"),
            subjects.outbound("telegram", conv),
        )[number % 4]
        headers = {subjects.MSG_ID_HEADER: f"bad-{seed}-{number}"}
        while True:
            try:
                nc = await admin(running)
                await nc.jetstream().publish(subject, payload, headers=headers)
                break
            except (OSError, TimeoutError, nats.errors.Error):
                await asyncio.sleep(0.2)
        number += 1
    return payloads


async def admin(running: Stack) -> Client:
    """The stack's admin client, logged in again when the bus restart closed it."""
    if running.nc is None or running.nc.is_closed:
        running.nc = await running.connect("admin")
    return running.nc


async def bad_reported(running: Stack) -> int:
    """How many `bad_message` events SC_EVENTS holds."""
    nc = await admin(running)
    info = await nc.jetstream().stream_info(
        subjects.EVENTS_STREAM, subjects_filter=subjects.BAD_MESSAGE_EVENT
    )
    return sum((info.state.subjects or {}).values())


def together(*disturbances: Disturbance) -> Disturbance:
    """Several disturbances at once, until the last one ends."""

    async def all_of(load_done: asyncio.Event) -> None:
        await asyncio.gather(*(disturb(load_done) for disturb in disturbances))

    return all_of


def flood(running: Stack, payloads: int, seed: int) -> Disturbance:
    async def send(_load_done: asyncio.Event) -> None:
        await bad_traffic(running, payloads, seed)

    return send
