"""Per-turn bus overhead, throughput and memory of a real `stellaclaw up` (five processes + NATS).

The stack talks to the test kit's Telegram Bot API server and an OpenAI-compatible server that
answers at once, both in this process. A turn is timed from the moment the update is offered to
getUpdates to the moment the fake Bot API receives the answer's sendMessage; its overhead is that
time minus the model time (how long the fake model server spent on the turn's request).

    python bench/turn_overhead.py [--sequential 300] [--conversations 50] [--per-conversation 20]
                                  [--growth-turns 0] [--idle-s 40] [--lane-chats 20]
                                  [--lane-turns 10] [--panel-turn-s 30]
"""

import argparse
import asyncio
import os
import resource
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from services.session.actor import IDLE_S  # noqa: E402 -- after the path is set
from tests.kit import stack as sc_stack  # noqa: E402 -- after the path is set
from tests.kit.llm_api import OpenAIChatServer, llm_api, reply, tool_call  # noqa: E402
from tests.kit.telegram_api import TelegramAPIServer, telegram_api  # noqa: E402

FIRST_CHAT = 10_000
LANE_CHATS = 20_000  # the lanes phase's chats (two runs of `--lane-chats` each)
PANEL_CHAT, PANEL_GROUP = 30_000, -1_000_030_000  # the panel phase's chats
IDLE_AFTER_LOAD_S = 30.0


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def pids(running: sc_stack.Stack) -> dict[str, int]:
    found = {name: running.pid(name) for name in sc_stack.SERVICES}
    for pid, name in running.children().items():
        if name == "nats-server":
            found["nats-server"] = pid
    return found


def memory(running: sc_stack.Stack) -> dict[str, float]:
    return {name: rss_mb(pid) for name, pid in pids(running).items()}


def cpu_s(running: sc_stack.Stack) -> dict[str, float]:
    """User + system CPU seconds of every process so far."""
    ticks = os.sysconf("SC_CLK_TCK")
    found: dict[str, float] = {}
    for name, pid in pids(running).items():
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        found[name] = (int(fields[11]) + int(fields[12])) / ticks
    usage = resource.getrusage(resource.RUSAGE_SELF)
    found["this process (fakes)"] = usage.ru_utime + usage.ru_stime
    return found


async def turn(tg: TelegramAPIServer, chat_id: int, text: str) -> float:
    loop = asyncio.get_running_loop()
    start = loop.time()
    tg.user_says(chat_id, text)
    while True:
        sent = await tg.next_sent(chat_id, timeout_s=30)
        if sent.text == "ok":
            return loop.time() - start


async def sequential(tg: TelegramAPIServer, turns: int) -> list[float]:
    return [await turn(tg, FIRST_CHAT, f"sequential {n}") for n in range(turns)]


async def concurrent(tg: TelegramAPIServer, conversations: int, each: int) -> tuple[float, int]:
    async def one(chat_id: int) -> None:
        for n in range(each):
            await turn(tg, chat_id, f"concurrent {n}")

    loop = asyncio.get_running_loop()
    start = loop.time()
    await asyncio.gather(*(one(FIRST_CHAT + 1 + c) for c in range(conversations)))
    return loop.time() - start, conversations * each


def overheads(times: list[float], model_s: list[float]) -> list[float]:
    return [total - model for total, model in zip(times, model_s, strict=True)]


def report_times(title: str, times: list[float]) -> None:
    ms = sorted(t * 1000 for t in times)
    p50 = statistics.median(ms)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    print(f"{title}: p50 {p50:.1f} ms  p99 {p99:.1f} ms")


def report_memory(title: str, figures: dict[str, float]) -> None:
    print(f"{title}:")
    for name, mb in figures.items():
        print(f"  {name:<18} {mb:7.1f} MB")
    print(f"  {'total':<18} {sum(figures.values()):7.1f} MB")


async def main(args: argparse.Namespace) -> None:
    chats = [FIRST_CHAT + n for n in range(args.conversations + 1)]
    chats += [LANE_CHATS + n for n in range(2 * args.lane_chats)] + [PANEL_CHAT]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        async with telegram_api() as tg, llm_api(api_key="bench-key") as llm:
            llm.always(reply("ok"))
            config = root / "stellaclaw.toml"
            sc_stack.write_config(
                config, llm_base_url=llm.base_url, telegram_base_url=tg.base_url, user_ids=chats
            )
            sc_stack.add_every_provider(config, llm.base_url)
            with_env(tg.token)
            async with sc_stack.stack(config, root / "workdir") as running:
                await running.wait_ready(sc_stack.SERVICES)
                report_memory("idle RSS after start", memory(running))
                await sequential(tg, 20)  # warm up: imports, connections, actors
                report_memory("idle RSS after warm-up", before := memory(running))
                print(
                    "session idle RSS with every provider configured (openai_chat, "
                    f"openai_responses, anthropic, codex): {before['session']:.1f} MB"
                )
                llm.busy_s.clear()
                times = await sequential(tg, args.sequential)
                model_s = llm.busy_s[-len(times) :]  # one model call per turn, in turn order
                print(f"sequential turns: {len(times)}")
                report_times("  update in -> sendMessage out", times)
                report_times("  per-turn overhead (minus model time)", overheads(times, model_s))
                cpu_before = cpu_s(running)
                elapsed_s, count = await concurrent(tg, args.conversations, args.per_conversation)
                cpu_after = cpu_s(running)
                rate = count / elapsed_s
                print(
                    f"concurrent: {count} turns in {args.conversations} conversations: "
                    f"{elapsed_s:.2f} s, {rate:.0f} turns/s"
                )
                print("CPU per turn (concurrent phase):")
                for name, spent in cpu_after.items():
                    print(f"  {name:<18} {1000 * (spent - cpu_before[name]) / count:6.2f} ms")
                if args.lane_chats:
                    await lanes_phase(tg, args.lane_chats, args.lane_turns)
                if args.panel_turn_s:
                    await panel_phase(tg, llm, args.panel_turn_s)
                if args.idle_s:
                    await idle_phase(running, before, args.idle_s)
                if args.growth_turns:
                    await growth_phase(running, tg, llm, args, before)
                llm.requests.clear()


async def lanes_phase(tg: TelegramAPIServer, chats: int, each: int) -> None:
    """`chats` private chats at once, `each` turns each: the other chats' turn times, without and
    with a 5 s `retry_after` on one chat's first answer (per-chat lanes: it holds up no other)."""
    print(f"lanes: {chats} private chats, {each} turns each")
    for run, label in enumerate(("no wait", "a 5 s retry_after in one chat")):
        first = LANE_CHATS + run * chats
        if run:
            tg.fail_next("sendMessage", retry_after=5, chat_id=first)
        others: list[float] = []

        async def chat_turns(chat_id: int, into: list[float]) -> None:
            for n in range(each):
                into.append(await turn(tg, chat_id, f"lane {n}"))

        waited: list[float] = []
        others_turns = (chat_turns(first + c, others) for c in range(1, chats))
        await asyncio.gather(chat_turns(first, waited), *others_turns)
        report_times(f"  {label}: the other chats' turn time", others)
        if run:
            report_times("  the waiting chat's turn time", waited)


async def panel_phase(tg: TelegramAPIServer, llm: OpenAIChatServer, turn_s: float) -> None:
    """A turn of `turn_s` seconds with 10 tool calls, in a private chat and then in a group,
    against the kit's Bot API enforcing Telegram's limits: the panel's sends and edits, and 429s."""
    tg.enforce_limits()
    bot = tg.bot_username
    for chat_id, where in ((PANEL_CHAT, "private chat"), (PANEL_GROUP, "group")):
        calls = [tool_call("shell", {"command": f"sleep {turn_s / 10:.2f}"}) for _ in range(10)]
        llm.script(*calls, reply("panel done"))
        before = len(tg.calls)
        if chat_id > 0:
            tg.user_says(chat_id, "a long task")
        else:
            tg.user_says(chat_id, f"@{bot} a long task", user_id=PANEL_CHAT, chat_type="supergroup")
        while (await tg.next_sent(chat_id, timeout_s=turn_s + 60)).text != "panel done":
            pass
        panel = [
            c
            for c in tg.calls[before:]
            if c.method in ("sendMessage", "editMessageText")
            and c.params.get("chat_id") == chat_id
            and c.params.get("text") != "panel done"
        ]
        print(
            f"panel, {turn_s:.0f} s turn with 10 tool calls, {where}: {len(panel)} sends and "
            f"edits, {tg.too_many(chat_id)} answered 429"
        )


async def growth_phase(
    running: sc_stack.Stack,
    tg: TelegramAPIServer,
    llm: OpenAIChatServer,
    args: argparse.Namespace,
    before: dict[str, float],
) -> None:
    done = 0
    while done < args.growth_turns:  # in rounds, so the fakes' taps stay small
        await concurrent(tg, args.conversations, 10)
        done += 10 * args.conversations
        llm.requests.clear()
    report_memory(f"RSS right after {done} more turns", memory(running))
    await asyncio.sleep(IDLE_AFTER_LOAD_S)  # caches settle; nothing is waited for
    after = memory(running)
    report_memory(f"RSS {IDLE_AFTER_LOAD_S:.0f} s later, idle", after)
    for name, mb in after.items():
        growth = 100 * (mb - before[name]) / before[name]
        print(f"  growth {name:<18} {growth:+6.1f} %")


async def idle_phase(running: sc_stack.Stack, warm: dict[str, float], idle_s: float) -> None:
    """After the load, the actors go idle and let their sessions go (IDLE_S): the session
    service's memory should return close to its warm-up level."""
    await asyncio.sleep(idle_s)  # the actors' idle timeout runs out; nothing is waited for
    session_mb = memory(running)["session"]
    change = 100 * (session_mb - warm["session"]) / warm["session"]
    print(
        f"session RSS {idle_s:.0f} s after the load (idle actors released): "
        f"{session_mb:.1f} MB ({change:+.1f} % vs warm-up)"
    )


def with_env(token: str) -> None:
    """The benchmark sets the variables its config references; the stack inherits them."""
    os.environ[sc_stack.KEY_VARIABLE] = "bench-key"  # noqa: TID251 -- see the docstring
    os.environ[sc_stack.TOKEN_VARIABLE] = token  # noqa: TID251 -- see the docstring


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequential", type=int, default=300)
    parser.add_argument("--conversations", type=int, default=50)
    parser.add_argument("--per-conversation", type=int, default=20)
    parser.add_argument("--growth-turns", type=int, default=0)
    parser.add_argument("--lane-chats", type=int, default=20, help="0: no lanes phase")
    parser.add_argument("--lane-turns", type=int, default=10)
    parser.add_argument("--panel-turn-s", type=float, default=30.0, help="0: no panel phase")
    parser.add_argument("--idle-s", type=float, default=IDLE_S + 10, help="0: no idle phase")
    asyncio.run(main(parser.parse_args()))
