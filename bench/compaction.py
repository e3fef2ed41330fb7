"""A long conversation on a small window, through a real `stellaclaw up` (SPEC §4).

One chat sends `--turns` messages one after another to a model configured with a
`--window`-token context; the fake model answers each with a few hundred words (summary calls
included), so the history outgrows the window many times over. Printed: turns answered,
compactions (from SC_HIST), tokens sent per model call (p50 and max, estimated as SPEC §4.1 counts
ASCII text: characters / 4), and the `session` process's RSS along the way and at the end.

    python bench/compaction.py [--turns 500] [--window 16000]
"""

import argparse
import asyncio
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.turn_overhead import rss_mb, with_env  # noqa: E402 -- after the path is set
from services.session import summary_request  # noqa: E402
from shared import subjects  # noqa: E402
from shared.messages.history import HISTORY, Compacted  # noqa: E402
from tests.kit import stack as sc_stack  # noqa: E402
from tests.kit.llm_api import ChatRequest, llm_api, reply  # noqa: E402
from tests.kit.telegram_api import telegram_api  # noqa: E402

CHAT = 20_000
ANSWER = " ".join(f"answer-word{n}" for n in range(250))  # about 900 tokens


def sent_tokens(request: ChatRequest) -> int:
    return sum(len(message.text) for message in request.messages) // 4


async def compactions(running: sc_stack.Stack) -> list[Compacted]:
    assert running.nc is not None
    js = running.nc.jetstream()
    subject = subjects.history(f"tg_{CHAT}_fg1")
    info = await js.stream_info(subjects.HISTORY_STREAM, subjects_filter=subject)
    count = sum((info.state.subjects or {}).values())
    sub = await js.subscribe(subject, stream=subjects.HISTORY_STREAM, ordered_consumer=True)
    found = []
    try:
        for _ in range(count):
            event = HISTORY.decode((await sub.next_msg(timeout=10)).data)
            if isinstance(event, Compacted):
                found.append(event)
    finally:
        await sub.unsubscribe()
    return found


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        async with telegram_api() as tg, llm_api(api_key="bench-key") as llm:
            llm.always(reply(ANSWER))
            config = root / "stellaclaw.toml"
            sc_stack.write_config(
                config, llm_base_url=llm.base_url, telegram_base_url=tg.base_url, user_ids=[CHAT]
            )
            small = f'model = "gpt-e2e"\ncontext_window = {args.window}\n'
            config.write_text(config.read_text().replace('model = "gpt-e2e"\n', small))
            with_env(tg.token)
            async with sc_stack.stack(config, root / "workdir") as running:
                await running.wait_ready(sc_stack.SERVICES)
                answered, rss = await drive(tg, running, args.turns)
                found = await compactions(running)
        calls = [r for r in llm.requests if r.messages[0].text != summary_request.instructions()]
        sizes = [sent_tokens(r) for r in calls]
        print(f"turns answered: {answered} of {args.turns} (window {args.window:,} tokens)")
        print(f"compactions: {len(found)} ({len(llm.requests) - len(calls)} summary calls)")
        print(
            f"tokens sent per model call: p50 {statistics.median(sizes):,.0f}  max {max(sizes):,}"
        )
        marks = "  ".join(f"{n}: {mb:.1f} MB" for n, mb in rss)
        print(f"session RSS after turns {marks}")


async def drive(tg, running: sc_stack.Stack, turns: int) -> tuple[int, list[tuple[int, float]]]:
    answered = 0
    rss: list[tuple[int, float]] = []
    for n in range(1, turns + 1):
        tg.user_says(CHAT, f"message {n}: " + " ".join(f"w{n}-{i}" for i in range(100)))
        while True:
            sent = await tg.next_sent(CHAT, timeout_s=60)
            if sent.text.startswith("answer-word0"):
                answered += 1
                break
        if n in (1, turns // 4, turns // 2, 3 * turns // 4, turns):
            rss.append((n, rss_mb(running.pid("session"))))
    return answered, rss


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=500)
    parser.add_argument("--window", type=int, default=16_000)
    asyncio.run(main(parser.parse_args()))
