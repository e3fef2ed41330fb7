"""The stack on a 3-node NATS cluster with `bus.replicas = 3` (DESIGN §1: any single process, a
NATS node included, may die): the layout is replicated, and a Telegram round trip through all five
services keeps working while one node is SIGKILLed and after it rejoins."""

from collections.abc import AsyncIterator

import pytest
from nats.js.api import ClusterInfo

from services.conversation.service import run as run_conversation
from services.delivery.service import run as run_delivery
from services.ingress_telegram.service import run as run_ingress
from services.session.service import run as run_session
from services.tools.service import run as run_tools
from shared import layout, subjects
from shared.config import BusConfig
from shared.connection import connected
from shared.errors import ConfigError
from tests.kit.llm_api import OpenAIChatServer, llm_api, reply, tool_call
from tests.kit.nats import TestBus, connect_as
from tests.kit.nats_cluster import KitCluster, nats_cluster, node_name
from tests.kit.services import make_runtime, running
from tests.kit.telegram_api import TelegramAPIServer, telegram_api
from tests.kit.waiting import eventually_async

REPLICATED = BusConfig(in_partitions=4, replicas=3)


@pytest.fixture
async def cluster(tmp_path) -> AsyncIterator[KitCluster]:
    async with nats_cluster(tmp_path / "cluster") as found:
        yield found


@pytest.fixture
async def admin(cluster: KitCluster) -> AsyncIterator[TestBus]:
    """The test's client (as `admin`, on any node), after laying out `bus.replicas = 3`."""
    nc = await connect_as(cluster.access, "admin", max_reconnect_attempts=-1)
    try:
        await layout.ensure(nc.jetstream(), REPLICATED)
        yield TestBus(nc, cluster.access.url)
    finally:
        await nc.close()


def laid_out(bus: BusConfig) -> list[str]:
    """The streams behind every stream, bucket and object store of the layout."""
    names = [config.name or "" for config in layout.streams(bus)]
    names += [f"KV_{bucket.bucket}" for bucket in layout.buckets(bus)]
    return [*names, f"OBJ_{subjects.FILES_STORE}"]


async def replicas(admin: TestBus) -> dict[str, int]:
    """Each laid-out stream's and durable's replicas as the cluster counts them (the leader and
    its peers)."""
    found = {}
    for name in laid_out(REPLICATED):
        found[name] = counted((await admin.js.stream_info(name)).cluster)
    for consumers in layout.durables(REPLICATED).values():
        for consumer in consumers:
            held = await admin.js.consumer_info(consumer.stream, consumer.durable)
            found[consumer.durable] = counted(held.cluster)
    return found


def counted(cluster: ClusterInfo | None) -> int:
    """The leader and its peers (a group with no peers reported yet has one: its leader)."""
    return 1 + len(cluster.replicas or []) if cluster else 1


async def is_replicated(admin: TestBus) -> bool:
    return set((await replicas(admin)).values()) == {3}


async def test_a_layout_of_one_replica_is_scaled_to_three(cluster):
    nc = await connect_as(cluster.access, "admin")
    try:
        single = BusConfig(in_partitions=REPLICATED.in_partitions, replicas=1)
        await layout.ensure(nc.jetstream(), single)
        bus = TestBus(nc, cluster.access.url)
        assert set((await replicas(bus)).values()) == {1}
        await layout.ensure(nc.jetstream(), REPLICATED)
        for name in laid_out(REPLICATED):
            assert (await bus.js.stream_info(name)).config.num_replicas == 3, name
        await eventually_async(
            lambda: is_replicated(bus), timeout_s=30, what="every stream and durable on 3 nodes"
        )
    finally:
        await nc.close()


async def test_three_replicas_on_a_single_server_is_a_config_error(nats_access):
    nc = await connect_as(nats_access, "admin")
    try:
        with pytest.raises(ConfigError, match=r"bus\.replicas: NATS refused .* 3 replicas"):
            await layout.ensure(nc.jetstream(), REPLICATED)
    finally:
        await nc.close()


async def test_a_service_logs_in_through_any_listed_server_while_one_is_down(cluster):
    await cluster.kill(0)
    access = cluster.access  # node 1 first in the list, and down
    assert access.url.split(",")[0] == cluster.urls[0]
    for _ in range(3):  # the client shuffles the list, so try a few times
        async with connected(access, "ingress_telegram") as conn:
            assert cluster.index_of(conn.nc) != 0
            await conn.nc.flush(timeout=2)  # a round trip to the server it logged in to


ADA = 4242  # the allowed user, in her private chat
KEY = "sk-cluster"


def stack_config(telegram: TelegramAPIServer, llm: OpenAIChatServer) -> dict[str, object]:
    model = {"provider": "openai_chat", "model": "gpt-cluster", "base_url": llm.base_url}
    return {
        "default_model": "main",
        "models": {"main": model | {"api_key": KEY}},
        "telegram": {
            "bot_token": telegram.token,
            "api_base": telegram.base_url,
            "allowed_user_ids": [ADA],
        },
        "bus": {"in_partitions": REPLICATED.in_partitions, "replicas": REPLICATED.replicas},
        "shutdown_grace_s": 5,
    }


class Stack:
    def __init__(self, telegram: TelegramAPIServer, llm: OpenAIChatServer) -> None:
        self.telegram = telegram
        self.llm = llm

    async def exchange(self, text: str, answer: str) -> str:
        """Ada asks (the model runs a shell command, then answers); what reaches her chat."""
        self.llm.script(tool_call("shell", {"command": f"echo {answer}"}), reply(answer))
        self.telegram.user_says(ADA, text)
        sent = await self.telegram.next_sent(ADA, timeout_s=40)
        self.llm.assert_done()
        return sent.text


@pytest.fixture
async def stack(cluster, admin, tmp_path) -> AsyncIterator[Stack]:
    """All five services in this process, each logged in as its role on any of the 3 nodes."""
    workdir = tmp_path / "workdir"
    workdir.mkdir()
    async with telegram_api() as telegram, llm_api(api_key=KEY) as llm:
        telegram.outbox.hide_panels = True  # the test reads the answers
        runtime = make_runtime(stack_config(telegram, llm), workdir, cluster.access)
        runs = (run_ingress, run_conversation, run_session, run_tools, run_delivery)
        async with running(runtime, *runs):
            yield Stack(telegram, llm)


async def delivered(admin: TestBus) -> None:
    """Every output so far is sent and recorded, so a kill falls between a send and the next one,
    not between a send and its record (DESIGN §1: the one window that may send twice)."""
    durable = subjects.durable("delivery", "telegram")

    async def drained() -> bool:
        info = await admin.js.consumer_info(subjects.OUT_STREAM, durable)
        return not info.num_pending and not info.num_ack_pending

    await eventually_async(drained, timeout_s=10, what="delivery drained SC_OUT")


async def rejoined(admin: TestBus, cluster: KitCluster, index: int) -> None:
    """Until every replicated stream counts the node as a current peer again."""
    name = node_name(index)

    async def current() -> bool:
        for stream in (subjects.IN_STREAM, subjects.SESSION_STREAM, subjects.OUT_STREAM):
            info = await admin.js.stream_info(stream)
            assert info.cluster is not None
            peers = {peer.name: peer for peer in info.cluster.replicas or []}
            if info.cluster.leader != name and not (name in peers and peers[name].current):
                return False
        return True

    await eventually_async(current, timeout_s=30, what=f"{name} is a current peer again")


async def test_the_stack_keeps_answering_while_a_node_is_killed_and_restarted(
    cluster, admin, stack
):
    await eventually_async(lambda: is_replicated(admin), timeout_s=10, what="3 replicas each")
    assert await stack.exchange("first", "one") == "one"

    # The node leading SC_IN: its streams elect a new leader on the other two.
    cluster_info = (await admin.js.stream_info(subjects.IN_STREAM)).cluster
    assert cluster_info is not None
    assert cluster_info.leader is not None
    victim = [node_name(i) for i in range(3)].index(cluster_info.leader)
    await delivered(admin)
    await cluster.kill(victim)
    assert await stack.exchange("while a node is down", "two") == "two"
    await cluster.restart(victim)
    await rejoined(admin, cluster, victim)
    assert await stack.exchange("after it rejoined", "three") == "three"

    # The node this test's own client is connected to: the client moves to another one.
    victim = cluster.index_of(admin.nc)
    await delivered(admin)
    await cluster.kill(victim)
    assert await stack.exchange("without my node", "four") == "four"
    await cluster.restart(victim)
    await rejoined(admin, cluster, victim)
    assert stack.telegram.transcript(ADA) == ["one", "two", "three", "four"]
