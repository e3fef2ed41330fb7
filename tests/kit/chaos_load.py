"""The chaos suite's load: a model that reads, users who wait for their answers, and the tally.

The model answers `m <user> <k>` with `answer <user> <k>` after 50 to 500 ms; a third of the
messages (chosen by the seed) first get a `shell` call with a side effect,
`echo <call id> >> effects.log`, so every run of a call leaves one line in the conversation's
workspace. Each user sends the next message once the previous one was answered (or shown as
failed with a `⚠️` message).
"""

import asyncio
import random
import re
from collections import Counter, defaultdict
from pathlib import Path

import msgspec

from tests.kit.llm_api import ChatRequest, Step, reply, tool_call
from tests.kit.telegram_api import TelegramAPIServer

ASKED = re.compile(r"\bm (\d+) (\d+)\b")
ANSWERED = re.compile(r"^answer (\d+) (\d+)$")
EFFECTS = "effects.log"
FAILED = "⚠️"
# Delivery's warning for the one at-least-once window (DESIGN §1), and the conversation it names.
WINDOW = re.compile(r"output \S+ of (\S+) delivered again")

Marker = tuple[int, int]


class ChaosModel:
    """`respond_with` for the kit's model server: deterministic per seed and message."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.calls = 0

    def __call__(self, request: ChatRequest) -> Step:
        text = request.last_user_text or ""
        found = ASKED.findall(text)
        if not found:
            return reply("ok")  # not a user's message (a compaction summary, say)
        user, k = (int(part) for part in found[-1])
        rng = random.Random(f"{self.seed}/{user}/{k}/{len(request.messages)}")
        delay_s = rng.uniform(0.05, 0.5)
        if request.messages[-1].role != "tool" and has_effect(self.seed, (user, k)):
            self.calls += 1
            call_id = f"fx{self.seed}_{user}_{k}_{self.calls}"
            command = f"echo {call_id} >> {EFFECTS}"
            return tool_call("shell", {"command": command}, call_id=call_id, delay_s=delay_s)
        return reply(f"answer {user} {k}", delay_s=delay_s)


def has_effect(seed: int, marker: Marker) -> bool:
    return random.Random(f"{seed}/effect/{marker[0]}/{marker[1]}").random() < 1 / 3


class Tally(msgspec.Struct, kw_only=True):
    """What a chaos run counts (DESIGN §1's promises, each as a number)."""

    messages: int = 0
    kills: dict[str, int] = msgspec.field(default_factory=dict)
    answered_once: int = 0
    shown_recoverable: int = 0  # no answer, but the user was told (`⚠️ … /continue`)
    lost: int = 0
    duplicated: int = 0  # sent twice outside the logged at-least-once window: a failure
    duplicated_in_window: int = 0  # sent twice where delivery logged the window
    tool_calls: int = 0
    side_effects_rerun: int = 0
    bad_payloads: int = 0
    bad_reported: int = 0
    missing: list[str] = msgspec.field(default_factory=list)  # `<user>/<k>` lost or duplicated

    def failures(self) -> int:
        return self.lost + self.duplicated + self.side_effects_rerun

    def table(self) -> str:
        kills = ", ".join(f"{name} {count}" for name, count in sorted(self.kills.items()))
        rows = [
            ("messages", self.messages),
            ("kills", f"{sum(self.kills.values())} ({kills or 'none'})"),
            ("answered once", self.answered_once),
            ("shown as recoverable", self.shown_recoverable),
            ("lost", self.lost),
            ("duplicated", self.duplicated),
            ("sent twice in the logged window", self.duplicated_in_window),
            ("side-effect calls", self.tool_calls),
            ("side effects re-run", self.side_effects_rerun),
        ]
        if self.bad_payloads:
            rows.append(
                ("bad payloads sent / reported", f"{self.bad_payloads} / {self.bad_reported}")
            )
        lines = [f"{name:<34}{value}" for name, value in rows]
        return "\n".join(lines + self.missing[:20])


class Ledger:
    """What the users saw, read from the fake Bot API's sends as they happen."""

    def __init__(self, telegram: TelegramAPIServer) -> None:
        self.telegram = telegram
        self.answers: Counter[Marker] = Counter()
        self.failed: dict[int, list[str]] = defaultdict(list)
        self._read = 0
        self._changed = asyncio.Condition()

    async def follow(self) -> None:
        """Read new sends every 50 ms (the fake keeps a list) and wake the waiting users."""
        while True:
            sent = self.telegram.outbox.sent
            if len(sent) > self._read:
                for message in sent[self._read :]:
                    self._note(message.method, message.chat_id, message.text)
                self._read = len(sent)
                async with self._changed:
                    self._changed.notify_all()
            await asyncio.sleep(0.05)

    def _note(self, method: str, chat_id: int, text: str) -> None:
        if method != "sendMessage":
            return
        if answered := ANSWERED.match(text):
            self.answers[(int(answered[1]), int(answered[2]))] += 1
        elif text.startswith(FAILED):
            self.failed[chat_id].append(text)

    async def wait_outcome(self, marker: Marker, failures_before: int, timeout_s: float) -> bool:
        """Until `marker` is answered or its chat shows a new failure; False when neither came."""

        def settled() -> bool:
            return self.answers[marker] > 0 or len(self.failed[marker[0]]) > failures_before

        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(settled), timeout_s)
            except TimeoutError:
                return False
        return True


async def converse(telegram: TelegramAPIServer, ledger: Ledger, user: int, until: "Until") -> int:
    """One user's conversation, each message after the previous one's outcome: at least
    `until.messages`, and more while `until.deadline` (loop time) lies ahead; returns how many."""
    loop = asyncio.get_running_loop()
    k = 0
    while k < until.messages or loop.time() < until.deadline:
        failures_before = len(ledger.failed[user])
        telegram.user_says(user, f"m {user} {k}")
        await ledger.wait_outcome((user, k), failures_before, until.timeout_s)
        k += 1
    return k


class Until(msgspec.Struct, frozen=True, kw_only=True):
    messages: int
    deadline: float = 0.0  # loop time; 0: just `messages`
    timeout_s: float = 90.0  # for one message's outcome


def count(tally: Tally, ledger: Ledger, sent: dict[int, int], seed: int, workdir: Path) -> Tally:
    """Fill `tally` from what the users saw (`sent`: messages per user), the workspaces' effect
    lines and delivery's logs."""
    windows = Counter(
        match[1]
        for log in (workdir / "logs").glob("delivery*.log")
        for match in WINDOW.finditer(log.read_text(encoding="utf-8", errors="replace"))
    )
    for user, messages in sent.items():
        recovered = len(ledger.failed[user])
        extra_in_window = windows[f"tg_{user}"]
        for k in range(messages):
            tally.messages += 1
            seen = ledger.answers[(user, k)]
            if seen == 1:
                tally.answered_once += 1
            elif seen == 0 and recovered:
                recovered -= 1
                tally.shown_recoverable += 1
            elif seen == 0:
                tally.lost += 1
                tally.missing.append(f"lost {user}/{k}")
            else:
                in_window = min(seen - 1, extra_in_window)
                extra_in_window -= in_window
                tally.duplicated_in_window += in_window
                tally.duplicated += seen - 1 - in_window
                if seen - 1 > in_window:
                    tally.missing.append(f"duplicated {user}/{k}")
                tally.answered_once += 1
    runs = Counter(
        line.strip()
        for effects in (workdir / "workspaces").glob(f"*/{EFFECTS}")
        for line in effects.read_text(encoding="utf-8").splitlines()
        if line.strip().startswith(f"fx{seed}_")
    )
    tally.tool_calls = len(runs)
    tally.side_effects_rerun = sum(1 for times in runs.values() if times > 1)
    return tally
