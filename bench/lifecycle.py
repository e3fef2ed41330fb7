"""How fast a real `stellaclaw up` starts, stops and recovers: figures for the launcher.

Against the test kit's Telegram and OpenAI-compatible servers, each round starts `up` and prints:
start (spawn until every service answers `$SRV.PING`), an idle stop (SIGTERM until exit), a stop
during a turn (SIGTERM while the model takes 2 s to answer; exit, and whether the answer was
sent), and the recovery after a SIGKILL of the embedded nats-server (kill until a new message is
answered).

    python bench/lifecycle.py [--rounds 3]
"""

import argparse
import asyncio
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.kit import stack as sc_stack  # noqa: E402 -- after the path is set
from tests.kit.llm_api import llm_api, reply  # noqa: E402
from tests.kit.telegram_api import telegram_api  # noqa: E402
from tests.kit.waiting import eventually  # noqa: E402

USER = 7001
KEY = "sk-bench"


async def started(config: Path, workdir: Path) -> tuple[sc_stack.Stack, float]:
    began = time.perf_counter()
    running = await sc_stack.start_up(config, workdir)
    await running.wait_ready(sc_stack.SERVICES)
    return running, time.perf_counter() - began


async def stopped(running: sc_stack.Stack) -> float:
    if running.nc is not None:
        await running.nc.close()
    began = time.perf_counter()
    running.process.send_signal(signal.SIGTERM)
    code = await running.process.wait()
    assert code == 0, f"up exited with {code}"
    return time.perf_counter() - began


async def one_round(root: Path) -> dict[str, float]:
    async with telegram_api() as tg, llm_api(api_key=KEY) as llm:
        # `up` reads its secrets from the environment it inherits, as it does in production
        os.environ[sc_stack.KEY_VARIABLE] = KEY  # noqa: TID251 -- the child's environment
        os.environ[sc_stack.TOKEN_VARIABLE] = tg.token  # noqa: TID251 -- the child's environment
        config = root / "stellaclaw.toml"
        sc_stack.write_config(
            config, llm_base_url=llm.base_url, telegram_base_url=tg.base_url, user_ids=[USER]
        )
        workdir = root / "workdir"
        figures: dict[str, float] = {}
        running, figures["start"] = await started(config, workdir)
        figures["idle stop"] = await stopped(running)
        running, _ = await started(config, workdir)
        llm.script(reply("slow answer", delay_s=2.0))
        tg.user_says(USER, "take your time")
        await eventually(lambda: llm.requests, timeout_s=30)
        figures["stop during a turn"] = await stopped(running)
        figures["answered before the stop"] = float("slow answer" in tg.transcript(USER))
        running, _ = await started(config, workdir)
        [server] = [pid for pid, name in running.children().items() if name == "nats-server"]
        llm.script(reply("after the crash"))
        began = time.perf_counter()
        os.kill(server, signal.SIGKILL)
        tg.user_says(USER, "still there?")
        await eventually(lambda: "after the crash" in tg.transcript(USER), timeout_s=60)
        figures["nats-server SIGKILL to next answer"] = time.perf_counter() - began
        running.nc = await running.connect("admin")
        await stopped(running)
        return figures


async def main(rounds: int) -> None:
    results: dict[str, list[float]] = {}
    for _ in range(rounds):
        with tempfile.TemporaryDirectory() as root:
            for name, value in (await one_round(Path(root))).items():
                results.setdefault(name, []).append(value)
    print(f"stellaclaw up, {rounds} round(s) (seconds; median, then each round):")
    for name, values in results.items():
        each = "  ".join(f"{v:.2f}" for v in values)
        print(f"  {name:<36} {statistics.median(values):6.2f}   [{each}]")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    asyncio.run(main(parser.parse_args().rounds))
