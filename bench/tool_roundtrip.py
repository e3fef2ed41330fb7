"""Tool-call round trip through a real `stellaclaw up`: session → tools → session.

A RunTool is published as the session service publishes it; the time runs until its ToolFinished
arrives on the result subject. Measured for `shell` `true` (per sandbox mode) and for a 1 KB
`file_read`, one call at a time (p50/p99), then CONCURRENCY calls in flight (calls/s), with one
tools process and then with a second one serving the same pool (a replica, as on another host).

    python bench/tool_roundtrip.py [--calls 300] [--modes subprocess,bubblewrap]
"""

import argparse
import asyncio
import itertools
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import msgspec  # noqa: E402 -- after the path is set
from nats.aio.client import Client  # noqa: E402

from shared import subjects  # noqa: E402
from shared.ids import ConversationId, SessionId, ToolCallId  # noqa: E402
from shared.messages.contract import Workspace  # noqa: E402
from shared.messages.tools import TOOL_EVENT, RunTool, ToolFinished, ToolSucceeded  # noqa: E402
from shared.sandbox import SandboxSetting  # noqa: E402
from tests.kit import stack as sc_stack  # noqa: E402

CONFIG = """
default_model = "main"

[models.main]
provider = "openai_chat"
model = "unused"

[bus]
in_partitions = 1
"""
SESSION = SessionId("cli_bench_fg1")
CONVERSATION = ConversationId("cli_bench")
WARM_UP = 10
CONCURRENCY = 16
CALLS = itertools.count(1)
WORKDIR = Path(tempfile.mkdtemp(prefix="stellaclaw-bench-"))
Job = tuple[str, bytes, SandboxSetting]  # tool, arguments, sandbox mode


async def one_call(nc: Client, job: Job) -> float:
    tool, arguments, mode = job
    call_id = ToolCallId(f"c{next(CALLS)}")
    request = RunTool(
        session_id=SESSION,
        conversation_id=CONVERSATION,
        call_id=call_id,
        tool=tool,
        arguments=msgspec.Raw(arguments),
        workspace=Workspace(pool="local", path=f"workspaces/{CONVERSATION}"),
        sandbox=mode,
    )
    results = await nc.subscribe(subjects.tool_result(SESSION, call_id))
    began = time.perf_counter()
    await nc.jetstream().publish(
        subjects.tool_request("local", SESSION),
        msgspec.json.encode(request),
        headers={subjects.MSG_ID_HEADER: subjects.tool_request_msg_id(SESSION, call_id)},
    )
    while True:
        event = TOOL_EVENT.decode((await results.next_msg(timeout=60)).data)
        if isinstance(event, ToolFinished):
            break
    elapsed = time.perf_counter() - began
    await results.unsubscribe()
    if not isinstance(event.result, ToolSucceeded):
        log = WORKDIR / "logs" / "tools.log"
        raise SystemExit(f"{tool} ({mode}): the call failed: {event.result}; see {log}")
    return elapsed


async def latency(nc: Client, job: Job, calls: int) -> tuple[float, float]:
    for _ in range(WARM_UP):
        await one_call(nc, job)
    times = sorted([1000 * await one_call(nc, job) for _ in range(calls)])
    return statistics.median(times), times[min(len(times) - 1, int(len(times) * 0.99))]


async def throughput(nc: Client, job: Job, calls: int) -> float:
    left = iter(range(calls))

    async def worker() -> None:
        for _ in left:
            await one_call(nc, job)

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return calls / (time.perf_counter() - began)


async def report(nc: Client, jobs: list[tuple[str, Job]], calls: int, title: str) -> None:
    print(f"{title}:")
    print(f"  {'call':<28} {'p50':>8} {'p99':>8} {'calls/s':>9}")
    for name, job in jobs:
        p50, p99 = await latency(nc, job, calls)
        rate = await throughput(nc, job, calls)
        print(f"  {name:<28} {p50:6.2f} ms {p99:6.2f} ms {rate:9.0f}")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def main(args: argparse.Namespace) -> None:
    modes: list[SandboxSetting] = args.modes.split(",")
    jobs: list[tuple[str, Job]] = [
        ("file_read 1 KB", ("file_read", b'{"file_path": "one_kb.txt"}', "subprocess"))
    ]
    jobs += [(f"shell true ({mode})", ("shell", b'{"command": "true"}', mode)) for mode in modes]
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "stellaclaw.toml"
        config.write_text(CONFIG, encoding="utf-8")
        workdir = WORKDIR
        async with sc_stack.stack(config, workdir) as running:
            nc = await running.wait_ready(("tools",))
            await one_call(nc, ("shell", b'{"command": "true"}', "subprocess"))  # the workspace
            (workdir / "workspaces" / CONVERSATION / "one_kb.txt").write_text(
                ("x" * 63 + "\n") * 16, encoding="utf-8"
            )
            tools = running.pid("tools")
            print(f"tools RSS after one call: {rss_mb(tools):.1f} MB")
            print(f"{args.calls} calls each; {CONCURRENCY} in flight for calls/s")
            print(f"{os.cpu_count()} cores")
            await report(nc, jobs, args.calls, "one tools process")
            async with sc_stack.replica(running, "tools", config, "bench/tools/2"):
                await running.wait_instances("tools", 2)
                await report(nc, jobs, args.calls, "two tools processes on the pool")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--modes", default="subprocess,bubblewrap")
    asyncio.run(main(parser.parse_args()))
