"""Tool-call round trip through a real `stellaclaw up`: session → tools → session.

A RunTool is published as the session service publishes it; the time runs until its ToolFinished
arrives on the result subject. Measured for `shell` `true` (per sandbox mode) and for a 1 KB
`file_read`, locally and on remote `box` (pool `ssh_box`, fixed mode: the kit's SSH server on
loopback, in this process, over a warm connection), one call at a time (p50/p99), then
CONCURRENCY calls in flight (calls/s), with one tools process and then with a second one serving
the same pools (a replica, as on another host).

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
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
warnings.filterwarnings("ignore", "DSA is deprecated")  # asyncssh's import (see pyproject.toml)

import msgspec  # noqa: E402 -- after the path is set
from nats.aio.client import Client  # noqa: E402

from shared import subjects  # noqa: E402
from shared.ids import ConversationId, SessionId, ToolCallId  # noqa: E402
from shared.messages.contract import Workspace  # noqa: E402
from shared.messages.tools import TOOL_EVENT, RunTool, ToolFinished, ToolSucceeded  # noqa: E402
from shared.sandbox import SandboxSetting  # noqa: E402
from tests.kit import stack as sc_stack  # noqa: E402
from tests.kit.ssh import ssh_server  # noqa: E402

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
LOCAL = Workspace(pool="local", path=f"workspaces/{CONVERSATION}")
ONE_KB = ("x" * 63 + "\n") * 16


class Job(msgspec.Struct, frozen=True):
    tool: str
    arguments: bytes
    mode: SandboxSetting  # the sandbox of a local call (a remote's commands run unsandboxed)
    workspace: Workspace = LOCAL


async def one_call(nc: Client, job: Job) -> float:
    tool, mode = job.tool, job.mode
    call_id = ToolCallId(f"c{next(CALLS)}")
    request = RunTool(
        session_id=SESSION,
        conversation_id=CONVERSATION,
        call_id=call_id,
        tool=tool,
        arguments=msgspec.Raw(job.arguments),
        workspace=job.workspace,
        sandbox=mode,
    )
    results = await nc.subscribe(subjects.tool_result(SESSION, call_id))
    began = time.perf_counter()
    await nc.jetstream().publish(
        subjects.tool_request(job.workspace.pool, SESSION),
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


def every_job(modes: list[SandboxSetting], remote_root: Path) -> list[tuple[str, Job]]:
    """The rows: local file_read and shell per sandbox mode, then the same on remote `box`."""
    read, true = b'{"file_path": "one_kb.txt"}', b'{"command": "true"}'
    on_box = Workspace(pool="ssh_box", path=LOCAL.path, remote="box", remote_root=str(remote_root))
    jobs = [("file_read 1 KB", Job("file_read", read, "subprocess"))]
    jobs += [(f"shell true ({mode})", Job("shell", true, mode)) for mode in modes]
    jobs += [("file_read 1 KB (ssh)", Job("file_read", read, "subprocess", on_box))]
    jobs += [("shell true (ssh)", Job("shell", true, "subprocess", on_box))]
    return jobs


def remote_table(remote: dict[str, object]) -> str:
    """`[remotes.box]` in TOML (a JSON string or integer is a TOML one)."""
    lines = [f"{key} = {msgspec.json.encode(value).decode()}" for key, value in remote.items()]
    return "\n[remotes.box]\n" + "\n".join(lines) + "\n"


async def main(args: argparse.Namespace) -> None:
    modes: list[SandboxSetting] = args.modes.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        remote_root = Path(tmp) / "remote"
        remote_root.mkdir()
        (remote_root / "one_kb.txt").write_text(ONE_KB, encoding="utf-8")
        jobs = every_job(modes, remote_root)
        async with ssh_server(Path(tmp)) as server:
            config = Path(tmp) / "stellaclaw.toml"
            config.write_text(CONFIG + remote_table(server.remote(remote_root)), encoding="utf-8")
            await measure(config, jobs, args.calls)


async def measure(config: Path, jobs: list[tuple[str, Job]], calls: int) -> None:
    workdir = WORKDIR
    async with sc_stack.stack(config, workdir) as running:
        nc = await running.wait_ready(("tools",))
        await one_call(nc, Job("shell", b'{"command": "true"}', "subprocess"))  # the workspace
        (workdir / "workspaces" / CONVERSATION / "one_kb.txt").write_text(ONE_KB, encoding="utf-8")
        tools = running.pid("tools")
        print(f"tools RSS after one call: {rss_mb(tools):.1f} MB")
        print(f"{calls} calls each; {CONCURRENCY} in flight for calls/s")
        print(f"{os.cpu_count()} cores")
        await report(nc, jobs, calls, "one tools process")
        async with sc_stack.replica(running, "tools", config, "bench/tools/2"):
            await running.wait_instances("tools", 2)
            await report(nc, jobs, calls, "two tools processes on the pools")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--modes", default="subprocess,bubblewrap")
    asyncio.run(main(parser.parse_args()))
