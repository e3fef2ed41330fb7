"""Telegram out, end to end (SPEC §12.5-§12.7): a long turn as the user sees it — typing, the
progress panel paced within Telegram's limits, the answer — against `stellaclaw up`, the kit's
Bot API server enforcing Telegram's limits, and a scripted model. Prints what the chat showed
(`pytest -s`)."""

import itertools
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.kit import stack as sc_stack
from tests.kit.llm_api import reply, tool_call
from tests.kit.telegram_api import Call
from tests.kit.waiting import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]
ADA = 7301
TEAM = -1007301


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory) -> AsyncIterator[tuple[sc_stack.Fakes, sc_stack.Stack]]:
    root: Path = tmp_path_factory.mktemp("e2e-telegram-out")
    with pytest.MonkeyPatch.context() as env:
        async with sc_stack.fakes(root, env.setenv, [ADA]) as fakes:
            fakes.telegram.outbox.hide_panels = False  # the panel is what this module reads
            fakes.telegram.enforce_limits()
            async with sc_stack.stack(fakes.config, fakes.workdir) as running:
                await running.wait_ready(sc_stack.SERVICES)
                yield fakes, running


def panel_calls(fakes: sc_stack.Fakes, chat_id: int, answer: str) -> list[Call]:
    """The chat's panel sends and edits, in order (the answer left out)."""
    return [
        call
        for call in fakes.telegram.calls
        if call.method in ("sendMessage", "editMessageText")
        and call.params.get("chat_id") == chat_id
        and call.params.get("text") != answer
    ]


async def test_a_long_turn_shows_typing_a_paced_panel_and_the_answer(world):
    fakes, _ = world
    steps = [tool_call("shell", {"command": f"sleep 1.2 && echo step {n}"}) for n in range(4)]
    fakes.llm.script(*steps, reply("All four steps ran."))
    fakes.telegram.user_says(ADA, "run the four steps")
    await eventually(
        lambda: fakes.telegram.transcript(ADA)[-1:] == ["All four steps ran."], timeout_s=60
    )
    await eventually(lambda: fakes.telegram.transcript(ADA)[0].startswith("✅ Done"), timeout_s=15)
    calls = panel_calls(fakes, ADA, "All four steps ran.")
    states = [str(call.params.get("text")) for call in calls]
    panel, answer = fakes.telegram.transcript(ADA)
    assert states[0].startswith("⚙️ Working · main · ")
    assert any("⏳ shell: sleep 1.2 && echo step 0" in state for state in states)
    assert panel.startswith("✅ Done · ")
    assert panel.endswith(" · 4 tool calls")
    assert answer == "All four steps ran."
    assert fakes.telegram.actions(ADA).count("typing") >= 2  # the turn ran > 4 s
    assert all(b.at_s - a.at_s >= 0.95 for a, b in itertools.pairwise(calls))
    assert fakes.telegram.too_many() == 0
    print("\n--- a long turn, as Ada saw it ---")  # noqa: T201 -- the transcript is the point
    for state in [*states, answer]:
        print(state, "\n")  # noqa: T201


async def test_a_group_turn_edits_its_panel_at_most_every_4_s(world):
    fakes, _ = world
    bot = fakes.telegram.bot_username
    steps = [tool_call("shell", {"command": f"sleep 1 && echo {n}"}) for n in range(5)]
    fakes.llm.script(*steps, reply("Group work done."))
    fakes.telegram.user_says(TEAM, f"@{bot} do the group work", user_id=ADA, chat_type="supergroup")
    await eventually(
        lambda: fakes.telegram.transcript(TEAM)[-1:] == ["Group work done."], timeout_s=60
    )
    await eventually(lambda: fakes.telegram.transcript(TEAM)[0].startswith("✅ Done"), timeout_s=20)
    calls = panel_calls(fakes, TEAM, "Group work done.")
    assert len(calls) >= 2  # the panel, and at least its end state
    assert all(b.at_s - a.at_s >= 3.9 for a, b in itertools.pairwise(calls))
    assert fakes.telegram.too_many() == 0
