"""Compaction through the real session service (SPEC §4), on a small configured window with the
fake chat completions API: long conversations keep answering, the summary request is what SPEC
§4.3 says, a context-length error compacts and retries, a failed summary leaves history intact."""

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from services.session import summary_request
from services.session.service import run as run_session
from services.tools.service import run as run_tools
from shared import subjects
from shared.messages.history import (
    COMPRESSION_TAG,
    HISTORY,
    AssistantMessage,
    Compacted,
    HistoryEvent,
    TurnFinished,
    UserMessage,
)
from shared.messages.session import CompactSession
from tests.integration.test_session import OUT, SESSION, answer, config, handle, say, wake
from tests.kit.llm_api import ChatRequest, OpenAIChatServer, Step, http_error, llm_api, reply
from tests.kit.services import make_runtime, running
from tests.kit.waiting import eventually_async

WINDOW = 6_000  # the tool catalog alone takes about 3,300 of it
MAX_OUTPUT = 500
LIMIT = min(math.floor(WINDOW * 0.9), WINDOW - MAX_OUTPUT)  # SPEC §4.2: 5,400 tokens
SUMMARY = "## Goal\nKeep talking.\n## Next step\nAnswer the next message."


def small_window(base_url: str) -> dict[str, object]:
    settings = config(base_url)
    model = settings["models"]["main"]  # type: ignore[index]
    model |= {"context_window": WINDOW, "max_output_tokens": MAX_OUTPUT}
    return settings


@asynccontextmanager
async def small_stack(
    bus, workdir, nats_access, *steps: Step, always: Step | None = None, **tables: object
) -> AsyncIterator[OpenAIChatServer]:
    """The session and tools services on the small window, the fake model scripted with
    `steps` (then answering `always`, if given)."""
    async with llm_api(api_key="k") as llm:
        llm.script(*steps)
        if always is not None:
            llm.always(always)
        runtime = make_runtime(small_window(llm.base_url) | tables, workdir, nats_access)
        await bus.watch(OUT)
        async with running(runtime, run_session, run_tools):
            yield llm


def is_summary_call(request: ChatRequest) -> bool:
    return request.messages[0].text == summary_request.instructions()


async def stored(bus) -> list[HistoryEvent]:
    events: list[HistoryEvent] = await bus.stored(
        subjects.HISTORY_STREAM, subjects.history(SESSION), HISTORY
    )
    return events


def words(n: int) -> str:
    return " ".join(f"word{i}" for i in range(n))


async def test_a_conversation_far_past_the_window_keeps_answering(bus, workdir, nats_access):
    async with small_stack(bus, workdir, nats_access, always=reply(SUMMARY)) as llm:
        for n in range(1, 51):  # every answer is the summary, summaries' included
            await say(bus, f"message {n}: {words(120)}", n)
            final = await answer(bus)
            assert final.text == SUMMARY, f"turn {n}: {final.text}"

    events = await stored(bus)
    compactions = [e for e in events if isinstance(e, Compacted)]
    assert len(compactions) >= 3
    assert [c.number for c in compactions] == list(range(1, len(compactions) + 1))
    turns = [r for r in llm.requests if not is_summary_call(r)]
    assert len(turns) == 50
    for request in turns:  # every call after the first compaction starts from the summary
        texts = [m.text for m in request.messages if m.role == "user"]
        if any(COMPRESSION_TAG in t for t in texts):
            assert texts[0].startswith(COMPRESSION_TAG)
    last = turns[-1]
    assert sum(len(m.text) for m in last.messages) < LIMIT * 4  # within the limit, in chars


async def test_the_summary_request_is_what_spec_4_3_says(bus, workdir, nats_access):
    async with small_stack(bus, workdir, nats_access, always=reply(SUMMARY)) as llm:
        for n in range(1, 21):
            await say(bus, f"message {n}: {words(200)}", n)
            await answer(bus)

    summaries = [r for r in llm.requests if is_summary_call(r)]
    assert summaries
    first = summaries[0]
    assert [m.role for m in first.messages] == ["system", "user"]
    assert first.tools == []  # no tools for the summary
    assert first.body["max_tokens"] == 2_048  # compaction.summary_max_tokens
    asked = first.messages[1].text
    assert "USER: message 1: word0" in asked
    assert f"ASSISTANT: {SUMMARY.splitlines()[0]}" in asked
    if len(summaries) > 1:
        assert "PREVIOUS SUMMARY" in summaries[1].messages[1].text
    # the call after the first summary: the system prompt, the summary, the verbatim tail
    after = llm.requests[llm.requests.index(first) + 1]
    assert after.messages[1].text == f"{COMPRESSION_TAG}\n\n{SUMMARY}"
    tail = after.messages[2:-1]
    assert tail[0].role in ("user", "assistant")  # a message boundary, never a tool result
    assert sum(len(m.text) // 4 + 4 for m in tail) <= 1_080  # max(1,024, 0.18 x 6,000)
    folded = [m.text for m in first.messages[1:]]
    assert not any(m.text in folded[0] for m in tail if m.role == "user")  # none was folded
    events = await stored(bus)
    [compacted, *_] = [e for e in events if isinstance(e, Compacted)]
    assert compacted.summary == SUMMARY
    assert compacted.tokens_after < compacted.tokens_before
    kept = [e for e in events if isinstance(e, UserMessage | AssistantMessage)]
    assert kept  # the verbatim tail and what came after stay stored, and nothing is deleted
    assert sum(isinstance(e, UserMessage) for e in events) == 20


async def test_a_context_length_error_compacts_and_retries_the_call(bus, workdir, nats_access):
    too_long = http_error(400, "This model's maximum context length is 6000 tokens.")
    steps = (reply("one"), reply("two"), reply("three"), too_long, reply(SUMMARY))
    async with small_stack(bus, workdir, nats_access, *steps, always=reply("four")) as llm:
        for n, expected in enumerate(("one", "two", "three", "four"), 1):
            await say(bus, f"message {n}: {words(180)}", n)  # about 360 tokens each
            assert (await answer(bus)).text == expected

    events = await stored(bus)
    [compacted] = [e for e in events if isinstance(e, Compacted)]
    assert compacted.reason == "context_length"
    retried = llm.requests[-1]
    assert retried.messages[1].text.startswith(COMPRESSION_TAG)  # the call again, compacted
    assert (retried.last_user_text or "").startswith("message 4: word0")
    assert not any("message 1:" in m.text for m in retried.messages)  # folded into the summary


async def test_a_failing_summary_leaves_history_intact_and_says_so(bus, workdir, nats_access):
    too_long = http_error(400, "prompt is too long: 7000 tokens > 6000 maximum")
    broken = http_error(503, "summaries are down")
    steps = (reply("one"), reply("two"), reply("three"), too_long, broken, broken)
    async with small_stack(bus, workdir, nats_access, *steps) as llm:
        for n in range(1, 5):
            await say(bus, f"message {n}: {words(180)}", n)
            last = await answer(bus)

    assert last.text.startswith("⚠️ Automatic context compaction failed: HTTP 503")
    assert last.text.endswith("Send /continue to retry, or /new to start fresh.")
    summaries = [r for r in llm.requests if is_summary_call(r)]
    assert len(summaries) == 2  # retried once (SPEC §4.5)
    events = await stored(bus)
    assert not [e for e in events if isinstance(e, Compacted)]
    users = [e.text for e in events if isinstance(e, UserMessage)]
    assert [text.split(":")[0] for text in users] == [f"message {n}" for n in range(1, 5)]
    [*_, finished] = [e for e in events if isinstance(e, TurnFinished)]
    assert (finished.error, finished.can_continue) == ("compaction", True)


async def ask_to_compact(bus, seq: int) -> list[str]:
    """`/compact` as the conversation service forwards it; the replies it gets."""
    message = handle("/compact", seq)
    compact = CompactSession(
        session_id=SESSION, input_seq=seq, chat=message.message.chat, settings=message.settings
    )
    await bus.publish(
        subjects.session_input(SESSION), compact, msg_id=subjects.session_input_msg_id(seq)
    )
    await wake(bus)
    said = [(await answer(bus)).text]
    if said[0] == "Will compact when the current turn ends.":  # read while the turn ended
        said.append((await answer(bus)).text)
    return [*said, (await answer(bus)).text]


async def test_compact_on_demand_says_what_it_did_and_nothing_when_there_is_nothing(
    bus, workdir, nats_access
):
    steps = (reply("one"), reply("two"), reply("three"), reply(SUMMARY))
    async with small_stack(bus, workdir, nats_access, *steps):
        assert await ask_to_compact(bus, 1) == ["🗜️ Compacting…", "Nothing to compact yet."]
        for n in range(2, 5):
            await say(bus, f"message {n}: {words(300)}", n)
            await answer(bus)
        *_, started, done = await ask_to_compact(bus, 5)

    assert started == "🗜️ Compacting…"
    [compacted] = [e for e in await stored(bus) if isinstance(e, Compacted)]
    assert done == (
        f"🗜️ Context compacted: {compacted.tokens_before:,} → {compacted.tokens_after:,} tokens."
    )
    assert compacted.reason == "command"
    assert compacted.inputs_through == 5  # a takeover does not compact twice


async def test_a_session_left_idle_with_a_full_window_compacts_in_the_background(
    bus, workdir, nats_access
):
    steps = (*[reply(f"answer {n}") for n in range(1, 5)], reply(SUMMARY), reply("five"))
    quick = {"idle_after_s": 0.2}  # a compressed clock
    # `always`: a later idle compaction, if the test still runs then
    async with small_stack(
        bus, workdir, nats_access, *steps, always=reply(SUMMARY), compaction=quick
    ) as llm:
        for n in range(1, 5):  # with the tool catalog, over half the window and under 90 %
            await say(bus, f"message {n}: {words(200)}", n)
            await answer(bus)

        async def compacted() -> Compacted | None:
            found = [e for e in await stored(bus) if isinstance(e, Compacted)]
            return found[0] if found else None

        idle = await eventually_async(compacted, timeout_s=10, what="an idle compaction")
        await say(bus, "message 5", 5)
        final = await answer(bus)

    assert idle.reason == "idle"
    assert idle.turn_id is None
    assert final.text == "five"
    fifth = [r for r in llm.requests if not is_summary_call(r)][-1]
    assert fifth.messages[1].text.startswith(COMPRESSION_TAG)  # from the summary on


async def test_a_rebuild_after_compaction_sends_what_the_model_was_last_sent(
    bus, workdir, nats_access
):
    too_long = http_error(400, "This model's maximum context length is 6000 tokens.")
    async with llm_api(api_key="k") as llm:
        llm.script(reply("one"), reply("two"), reply("three"), too_long, reply(SUMMARY))
        llm.script(reply("four"), reply("five"))
        runtime = make_runtime(small_window(llm.base_url), workdir, nats_access)
        await bus.watch(OUT)
        async with running(runtime, run_session, run_tools):
            for n in range(1, 5):
                await say(bus, f"message {n}: {words(180)}", n)
                await answer(bus)
        async with running(runtime, run_session, run_tools):  # a new process: history rebuilt
            await say(bus, "message 5", 5)
            assert (await answer(bus)).text == "five"

    before, after = llm.requests[-2:]
    sent = [(m.role, m.text) for m in before.messages]
    assert [(m.role, m.text) for m in after.messages] == [
        *sent,
        ("assistant", "four"),
        ("user", "message 5"),
    ]
    assert sent[1][1].startswith(COMPRESSION_TAG)
