"""A session process killed in the middle of a compaction, under a real `stellaclaw up`: the new
process redoes it, history holds exactly one `Compacted` event, and the message is answered once."""

from collections.abc import Callable
from pathlib import Path

import pytest

from shared import subjects
from shared.messages.history import COMPRESSION_TAG, HISTORY, Compacted, HistoryEvent
from tests.kit import stack as sc_stack
from tests.kit.llm_api import http_error, reply
from tests.kit.waiting import eventually

pytestmark = pytest.mark.e2e
USER = 6301
SESSION = f"tg_{USER}_fg1"
HOLD_S = 60.0  # the summary call the session dies in
RECOVERY_S = 60.0
TOO_LONG = http_error(400, "This model's maximum context length is 6000 tokens.")
SMALL_WINDOW = 'model = "gpt-e2e"\ncontext_window = 6000\nmax_output_tokens = 500\n'


async def stored(running: sc_stack.Stack) -> list[HistoryEvent]:
    assert running.nc is not None
    js = running.nc.jetstream()
    subject = subjects.history(SESSION)
    info = await js.stream_info(subjects.HISTORY_STREAM, subjects_filter=subject)
    count = sum((info.state.subjects or {}).values())
    sub = await js.subscribe(subject, stream=subjects.HISTORY_STREAM, ordered_consumer=True)
    try:
        return [HISTORY.decode((await sub.next_msg(timeout=5)).data) for _ in range(count)]
    finally:
        await sub.unsubscribe()


def has_said(world: sc_stack.Fakes, text: str) -> Callable[[], bool]:
    return lambda: text in world.telegram.transcript(USER)


@pytest.mark.timeout(150)
async def test_a_session_killed_during_a_compaction_compacts_once_and_answers_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    words = " ".join(f"word{i}" for i in range(180))
    async with sc_stack.fakes(tmp_path, monkeypatch.setenv, [USER]) as world:
        config = world.config.read_text(encoding="utf-8")
        world.config.write_text(config.replace('model = "gpt-e2e"\n', SMALL_WINDOW))
        world.llm.script(
            *[reply(f"answer {n}") for n in range(1, 5)],
            TOO_LONG,  # message 5: compact, then ask again
            reply("never: the session dies in this summary call", delay_s=HOLD_S),
            TOO_LONG,  # the new owner resumes the turn and meets the same error
            reply("## Goal\nKeep the thread."),
            reply("five"),
        )
        async with sc_stack.stack(world.config, world.workdir) as running:
            await running.wait_ready(sc_stack.SERVICES)
            for n in range(1, 5):
                world.telegram.user_says(USER, f"message {n}: {words}")
                await eventually(has_said(world, f"answer {n}"), 30, what=f"answer {n}")
            world.telegram.user_says(USER, "message 5")
            await eventually(lambda: len(world.llm.requests) == 6, 30, what="the summary call")
            running.kill("session")
            await eventually(
                lambda: "five" in world.telegram.transcript(USER), RECOVERY_S, what="the answer"
            )
            events = await stored(running)

    compactions = [e for e in events if isinstance(e, Compacted)]
    assert [c.number for c in compactions] == [1]
    assert compactions[0].reason == "context_length"
    assert world.telegram.transcript(USER).count("five") == 1
    summary_call = world.llm.requests[5]
    assert [m.role for m in summary_call.messages] == ["system", "user"]
    answered = world.llm.requests[-1]
    assert answered.messages[1].text.startswith(COMPRESSION_TAG)  # asked again, compacted
