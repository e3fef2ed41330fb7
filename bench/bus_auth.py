"""What logins and allow lists cost the bus: one JetStream hop with and without them.

Each round starts a `nats-server` three ways (no authorization; a user with an allow list like a
service's; the same with `allow_responses`) and times N hops of publish → fetch → ack as one
service does them, printing the wall time per hop and the server's CPU time per message.

    python bench/bus_auth.py [--messages 5000] [--rounds 2]
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import msgspec
import nats
import uvloop
from nats.js.api import AckPolicy, ConsumerConfig, StreamConfig

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from services.launcher.embedded_nats import EmbeddedNats, Setup  # noqa: E402

STREAM, DURABLE, ROLE = "BENCH", "bench", "svc"
ALLOW = {
    "publish": {
        "allow": [
            "bench.>",
            f"$JS.API.CONSUMER.INFO.{STREAM}.{DURABLE}",
            f"$JS.API.CONSUMER.MSG.NEXT.{STREAM}.{DURABLE}",
            f"$JS.ACK.{STREAM}.{DURABLE}.>",
        ]
    },
    "subscribe": {"allow": [f"_INBOX_{ROLE}.>"]},
}


def server_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def authorization(mode: str) -> bytes:
    rules: dict[str, object] = dict(ALLOW)
    if mode == "allow_responses":
        rules["allow_responses"] = True
    users = [
        {"user": ROLE, "password": "bench", "permissions": rules},
        {"user": "admin", "password": "bench"},
    ]
    return msgspec.json.encode({"authorization": {"users": users}})


async def hops(mode: str, messages: int, folder: Path) -> tuple[float, float]:
    conf = None
    if mode != "none":
        conf = folder / "nats.conf"
        conf.write_bytes(authorization(mode))
    server = EmbeddedNats(Setup(store_dir=folder / "store", conf_path=conf))
    await server.start()
    admin_login = {} if conf is None else {"user": "admin", "password": "bench"}
    login = {} if conf is None else {"user": ROLE, "password": "bench"}
    admin = await nats.connect(server.url, **admin_login)
    await admin.jetstream().add_stream(StreamConfig(name=STREAM, subjects=["bench.>"]))
    durable = ConsumerConfig(name=DURABLE, durable_name=DURABLE, ack_policy=AckPolicy.EXPLICIT)
    await admin.jetstream().add_consumer(STREAM, durable)
    client = await nats.connect(server.url, inbox_prefix=f"_INBOX_{ROLE}", **login)
    js = client.jetstream()
    sub = await js.pull_subscribe_bind(durable=DURABLE, stream=STREAM)
    assert server.pid is not None
    cpu_before, began = server_cpu_s(server.pid), time.perf_counter()
    for n in range(messages):
        await js.publish(f"bench.{n % 50}", b'{"kind": "bench"}')
        [msg] = await sub.fetch(1, timeout=5)
        await msg.ack()
    wall_s, cpu_s = time.perf_counter() - began, server_cpu_s(server.pid) - cpu_before
    await client.close()
    await admin.close()
    await server.stop()
    return 1e3 * wall_s / messages, 1e3 * cpu_s / messages


async def main(messages: int, rounds: int) -> None:
    print(f"publish -> fetch -> ack, {messages} messages a run (ms per message):")
    for round_number in range(1, rounds + 1):
        for mode in ("none", "allow lists", "allow_responses"):
            with tempfile.TemporaryDirectory() as folder:
                wall_ms, cpu_ms = await hops(mode, messages, Path(folder))
            print(f"  round {round_number}  {mode:<16} hop {wall_ms:.3f}   server CPU {cpu_ms:.3f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=2)
    arguments = parser.parse_args()
    uvloop.run(main(arguments.messages, arguments.rounds))
