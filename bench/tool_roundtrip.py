"""Tool-call round trip through a real `stellaclaw up`, per sandbox mode.

A RunTool for `shell` `true` is published as the session service publishes it; the time runs
until its ToolFinished arrives on the result subject. Each mode's calls go one after another
after a few warm-up calls; the tools service runs in its own process, as in production.

    python bench/tool_roundtrip.py [--calls 200] [--modes disabled,subprocess,bubblewrap]
"""

import argparse
import asyncio
import itertools
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
WARM_UP = 10


CALLS = itertools.count(1)


async def one_call(nc: Client, mode: SandboxSetting) -> float:
    call_id = ToolCallId(f"c{next(CALLS)}")
    request = RunTool(
        session_id=SESSION,
        conversation_id=ConversationId("cli_bench"),
        call_id=call_id,
        tool="shell",
        arguments=msgspec.Raw(b'{"command": "true"}'),
        workspace=Workspace(pool="local", path="workspaces/cli_bench"),
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
        event = TOOL_EVENT.decode((await results.next_msg(timeout=30)).data)
        if isinstance(event, ToolFinished):
            break
    elapsed = time.perf_counter() - began
    await results.unsubscribe()
    if not isinstance(event.result, ToolSucceeded):
        raise SystemExit(f"{mode}: the call failed: {event.result}")
    return elapsed


async def main(args: argparse.Namespace) -> None:
    modes: list[SandboxSetting] = args.modes.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "stellaclaw.toml"
        config.write_text(CONFIG, encoding="utf-8")
        async with sc_stack.stack(config, Path(tmp) / "workdir") as running:
            nc = await running.wait_ready(("tools",))
            print(f"shell `true`, {args.calls} calls per mode, one at a time:")
            print(f"  {'mode':<12} {'p50':>8} {'p90':>8} {'p99':>8}")
            for mode in modes:
                for _ in range(WARM_UP):
                    await one_call(nc, mode)
                times = sorted([1000 * await one_call(nc, mode) for _ in range(args.calls)])
                p50 = statistics.median(times)
                p90 = times[int(len(times) * 0.9)]
                p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
                print(f"  {mode:<12} {p50:6.1f} ms {p90:6.1f} ms {p99:6.1f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--modes", default="disabled,subprocess,bubblewrap")
    asyncio.run(main(parser.parse_args()))
