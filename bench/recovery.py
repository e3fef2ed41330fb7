"""How long a turn cut by a SIGKILLed session process takes to reach the user: kill to answer.

Each run starts a fresh `stellaclaw up` (five processes + NATS) against the test kit's Telegram Bot
API and OpenAI-compatible servers, both in this process. A user's message starts a turn; the fake
model holds that first call open (a slow reply, cut when its caller dies), and the process holding
the session's lease (KV `subjects.LEASE_BUCKET`) is SIGKILLed while it waits. A run is timed from
the kill to the fake Bot API receiving the sendMessage with the resumed turn's answer.

  same slot       `up` restarts the killed session process (its first restart: 1 s backoff); the
                  new process of the same slot takes the lease over at once (DESIGN §5).
  second replica  a second session process (`python -m services.session --owner-id ...`, the
                  same config and workdir) holds the lease: the launcher's session is SIGSTOPped
                  while the turn starts, so only the replica can take the wake. The replica is
                  killed; the launcher's session may take over once the lease has expired.

Each chat must get exactly one answer per turn; the count per chat shows a duplicate.

    python bench/recovery.py [--runs 5] [--setup both|same-slot|second-replica]
"""

import argparse
import asyncio
import os
import signal
import statistics
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import msgspec

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from services.session.lease import Owner  # noqa: E402 -- after the path is set
from shared import bus, layout, subjects  # noqa: E402
from tests.kit import stack as kit  # noqa: E402
from tests.kit.llm_api import OpenAIChatServer, llm_api, reply  # noqa: E402
from tests.kit.telegram_api import TelegramAPIServer, telegram_api  # noqa: E402
from tests.kit.waiting import eventually  # noqa: E402

KEY = "sk-bench"
FIRST_CHAT = 7100
ANSWER = "Recovered answer."
HELD = "never sent: its caller is killed first"
HOLD_S = 120.0  # the first model call's delay: the kill comes long before it ends
TURN_START_S = 30.0  # from the message to the first model call
SAME_SLOT_DEADLINE_S = 30.0
REPLICA_DEADLINE_S = layout.LEASE_TTL_S + 30.0
SAME_SLOT_TARGET_S = 2.0
REPLICA_TARGET_S = layout.LEASE_TTL_S + 2.0
# A stopped process's pending pull of a wake would still be served until it expires.
PULL_EXPIRED_S = bus.FETCH_WAIT_S + 1.0
SETTLE_S = 2.0  # after the answer, how long a duplicate may take to show
SETUPS = ("same-slot", "second-replica")
_OWNER: msgspec.json.Decoder[Owner] = msgspec.json.Decoder(Owner)


class Outcome(msgspec.Struct, frozen=True, kw_only=True):
    """One run: kill to answer (None: none came), the chat's answers, and why it did not count."""

    chat_id: int
    recovery_s: float | None = None
    answers: int = 0
    note: str = ""


class Fakes(msgspec.Struct, frozen=True, kw_only=True):
    telegram: TelegramAPIServer
    llm: OpenAIChatServer
    config: Path


@asynccontextmanager
async def fakes(root: Path, chat_id: int) -> AsyncIterator[Fakes]:
    """The fake Bot API and model; the model holds the first call, then answers at once."""
    async with telegram_api() as tg, llm_api(api_key=KEY) as llm:
        # `up` and the replica read their secrets from the environment they inherit
        os.environ[kit.KEY_VARIABLE] = KEY  # noqa: TID251 -- the children's environment
        os.environ[kit.TOKEN_VARIABLE] = tg.token  # noqa: TID251 -- the children's environment
        config = root / "stellaclaw.toml"
        kit.write_config(
            config, llm_base_url=llm.base_url, telegram_base_url=tg.base_url, user_ids=[chat_id]
        )
        llm.script(reply(HELD, delay_s=HOLD_S))
        llm.always(reply(ANSWER))
        yield Fakes(telegram=tg, llm=llm, config=config)


async def turn_started(world: Fakes, chat_id: int) -> None:
    """The user writes; wait until the session's model call is held open at the fake."""
    world.telegram.user_says(chat_id, "are you there?")
    await eventually(lambda: world.llm.requests, TURN_START_S, what="the first model call")


async def lease_holder(running: kit.Stack, chat_id: int) -> Owner | None:
    """Who holds the lease of the chat's session (the one key under its conversation)."""
    assert running.nc is not None
    leases = await running.nc.jetstream().key_value(subjects.LEASE_BUCKET)
    prefix = subjects.session_lease_key(f"tg_{chat_id}_")
    for key in await leases.keys():
        if key.startswith(prefix):
            entry = await leases.get(key)
            return _OWNER.decode(entry.value) if entry.value else None
    return None


def answer_times(tg: TelegramAPIServer, chat_id: int) -> list[float]:
    """Arrival times of the sendMessage calls that carried the answer to the chat."""
    return [
        call.at_s
        for call in tg.calls
        if call.method == "sendMessage"
        and call.params.get("text") == ANSWER
        and str(call.params.get("chat_id")) == str(chat_id)
    ]


def answers(tg: TelegramAPIServer, chat_id: int) -> int:
    """Answers the fake accepted for the chat (a refused send is not one)."""
    return sum(
        1
        for sent in tg.sent
        if sent.method == "sendMessage" and sent.chat_id == chat_id and sent.text == ANSWER
    )


async def recovered(
    running: kit.Stack, tg: TelegramAPIServer, chat_id: int, killed_at: float, deadline_s: float
) -> Outcome:
    """Wait for the answer; then, once delivery has nothing left, count the chat's answers."""
    try:
        await eventually(lambda: answer_times(tg, chat_id), deadline_s, what="the answer")
    except AssertionError:
        note = f"no answer within {deadline_s:.0f} s of the kill"
        return Outcome(chat_id=chat_id, answers=answers(tg, chat_id), note=note)
    await asyncio.sleep(SETTLE_S)  # a second owner's answer would be on its way by now
    await running.wait_drained(subjects.OUT_STREAM, subjects.durable("delivery", "telegram"))
    first_s = answer_times(tg, chat_id)[0]
    return Outcome(chat_id=chat_id, recovery_s=first_s - killed_at, answers=answers(tg, chat_id))


async def same_slot(running: kit.Stack, world: Fakes, chat_id: int) -> Outcome:
    """Kill the launcher's session mid model call; `up` restarts it and it takes over."""
    await turn_started(world, chat_id)
    holder = await lease_holder(running, chat_id)
    supervised = running.pid("session")
    if holder is None or holder.pid != supervised:
        note = f"the lease is held by {holder!r}, not the launcher's session (pid {supervised})"
        return Outcome(chat_id=chat_id, note=note)
    killed_at = asyncio.get_running_loop().time()
    running.kill("session")
    return await recovered(running, world.telegram, chat_id, killed_at, SAME_SLOT_DEADLINE_S)


async def start_replica(running: kit.Stack, config: Path, root: Path) -> asyncio.subprocess.Process:
    """A second session process outside the launcher, with a slot id of its own.

    `stellaclaw run session` takes no `--owner-id` (and would share the launcher's slot id), so
    this runs the module itself, which `stellaclaw run` is equivalent to.
    """
    argv = ["-m", "services.session", "--config", str(config), "--workdir", str(running.workdir)]
    argv += ["--owner-id", f"bench-replica/{os.getpid()}/session/1"]
    with (root / "replica.log").open("ab") as log:
        return await asyncio.create_subprocess_exec(
            sys.executable, *argv, cwd=ROOT, stdout=log, stderr=log, start_new_session=True
        )


async def replica_takes_the_turn(running: kit.Stack, world: Fakes, chat_id: int) -> Owner | None:
    """Stop the launcher's session while the turn starts, so only the replica takes the wake."""
    supervised = running.pid("session")
    os.kill(supervised, signal.SIGSTOP)
    try:
        async with asyncio.timeout(TURN_START_S):
            await running.wait_service("session")  # only the replica can answer now
        await asyncio.sleep(PULL_EXPIRED_S)  # the stopped process's pull of a wake lapses
        await turn_started(world, chat_id)
        return await lease_holder(running, chat_id)
    finally:
        os.kill(supervised, signal.SIGCONT)


async def second_replica(running: kit.Stack, world: Fakes, chat_id: int, root: Path) -> Outcome:
    """Kill the replica holding the lease; the launcher's session takes over after expiry."""
    replica = await start_replica(running, world.config, root)
    try:
        holder = await replica_takes_the_turn(running, world, chat_id)
        if holder is None or holder.pid != replica.pid:
            note = f"the lease is held by {holder!r}, not the replica (pid {replica.pid})"
            return Outcome(chat_id=chat_id, note=note)
        killed_at = asyncio.get_running_loop().time()
        replica.kill()
        return await recovered(running, world.telegram, chat_id, killed_at, REPLICA_DEADLINE_S)
    finally:
        if replica.returncode is None:
            replica.terminate()
        await replica.wait()


async def one_run(setup: str, chat_id: int) -> Outcome:
    """A fresh stack and fakes for one kill."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        async with (
            fakes(root, chat_id) as world,
            kit.stack(world.config, root / "workdir") as running,
        ):
            await running.wait_ready(kit.SERVICES)
            if setup == "same-slot":
                return await same_slot(running, world, chat_id)
            return await second_replica(running, world, chat_id, root)


def report(setup: str, outcomes: list[Outcome], target_s: float) -> None:
    times = [o.recovery_s for o in outcomes if o.recovery_s is not None]
    print(f"{setup}: SIGKILL of the lease holder mid model call -> answer at sendMessage")
    for n, outcome in enumerate(outcomes, 1):
        took = "-" if outcome.recovery_s is None else f"{outcome.recovery_s:6.2f} s"
        extra = f"  ({outcome.note})" if outcome.note else ""
        print(f"  run {n}: chat {outcome.chat_id}: {took}, answers {outcome.answers}{extra}")
    if times:
        low, mid, high = min(times), statistics.median(times), max(times)
        figures = f"min {low:.2f} s  median {mid:.2f} s  max {high:.2f} s"
        print(f"  {len(times)}/{len(outcomes)} answered: {figures}  (target <= {target_s:.0f} s)")
    else:
        print(f"  0/{len(outcomes)} answered (target <= {target_s:.0f} s)")
    counts = {o.chat_id: o.answers for o in outcomes}
    duplicated = [chat_id for chat_id, count in counts.items() if count > 1]
    verdict = f"DUPLICATE in chats {duplicated}" if duplicated else "no duplicate"
    print(f"  answers per chat (one turn each): {counts}: {verdict}")


async def main(args: argparse.Namespace) -> None:
    setups = SETUPS if args.setup == "both" else (args.setup,)
    targets = {"same-slot": SAME_SLOT_TARGET_S, "second-replica": REPLICA_TARGET_S}
    chat_id = FIRST_CHAT
    for setup in setups:
        outcomes = []
        for _ in range(args.runs):
            chat_id += 1
            outcomes.append(await one_run(setup, chat_id))
        report(setup, outcomes, targets[setup])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--setup", choices=("both", *SETUPS), default="both")
    asyncio.run(main(parser.parse_args()))
