"""The session against outsized and bad data (issue 11, findings 5 and 6): real NATS, the real
tools service, the fake model."""

import msgspec

from shared import subjects
from shared.ids import TurnId
from shared.messages.events import EVENT, BadMessage
from shared.messages.history import HISTORY, AssistantMessage, TurnFinished
from shared.messages.tools import RunTool
from tests.integration.test_session import CONV, SESSION, answer, say, session_stack
from tests.kit.llm_api import reply, tool_call, tool_calls

MB3 = 3_000_000
TOOL_REQUEST: msgspec.json.Decoder[RunTool] = msgspec.json.Decoder(RunTool)


async def test_a_3_mb_answer_travels_through_sc_files_and_history_keeps_it_cut(
    bus, workdir, nats_access
):
    text = "".join(f"line {n:07d} of a runaway answer\n" for n in range(MB3 // 30))
    async with session_stack(bus, workdir, nats_access, reply(text)):
        await say(bus, "write a lot", 1)
        final = await answer(bus)
    turn = TurnId(f"{SESSION}_t1")
    assert final.text == ""
    assert final.text_file == subjects.file_key(CONV, subjects.answer_file(turn))
    store = await bus.js.object_store(subjects.FILES_STORE)
    stored = await store.get(final.text_file)
    assert stored.data is not None
    assert stored.data.decode() == text
    events = await bus.stored(subjects.HISTORY_STREAM, subjects.history(SESSION), HISTORY)
    [kept] = [e for e in events if isinstance(e, AssistantMessage)]
    assert len(kept.text) < 300_000
    assert "chars omitted from the history; the user received all of it" in kept.text
    assert kept.text.startswith("line 0000000")
    assert kept.text.endswith(text[-40:])
    assert isinstance(events[-1], TurnFinished)
    assert events[-1].outcome == "answered"


async def test_a_3_mb_tool_output_reaches_the_model_cut(bus, workdir, nats_access):
    command = f"head -c {MB3} /dev/zero | tr '\\0' x"
    steps = (tool_call("shell", {"command": command}), reply("That was long."))
    async with session_stack(bus, workdir, nats_access, *steps) as llm:
        await say(bus, "print a lot", 1)
        final = await answer(bus)
    assert final.text == "That was long."
    result = msgspec.json.decode(llm.requests[1].tool_messages[0].text)
    assert 0 < len(result["output"]) <= 100_000
    assert "omitted" in result["output"]


async def test_junk_on_a_running_calls_result_subject_is_counted_and_the_turn_goes_on(
    bus, workdir, nats_access
):
    steps = (tool_call("shell", {"command": "sleep 1; echo real"}), reply("Got the real one."))
    await bus.watch(subjects.BAD_MESSAGE_EVENT)
    await bus.watch(subjects.tool_request("local", SESSION))
    async with session_stack(bus, workdir, nats_access, *steps) as llm:
        await say(bus, "run it", 1)
        request = await bus.next(subjects.tool_request("local", SESSION), TOOL_REQUEST, 10)
        junk_subject = subjects.tool_result(SESSION, request.call_id)
        await bus.publish(junk_subject, b'{"kind": "tool_finished", "oops": true}')
        final = await answer(bus)
        counters = await bus.nc.request(subjects.counters("session"), b"", timeout=5)
        fact = await bus.next(subjects.BAD_MESSAGE_EVENT, EVENT)
    assert final.text == "Got the real one."
    assert msgspec.json.decode(llm.requests[1].tool_messages[0].text)["output"] == "real\n"
    assert msgspec.json.decode(counters.data)["bad_messages"] == 1
    assert isinstance(fact, BadMessage)
    assert (fact.service, fact.subject) == ("session", junk_subject)


async def test_parallel_calls_overlap_but_never_more_than_max_parallel_tools(
    bus, workdir, nats_access
):
    def step(n: int) -> dict[str, object]:
        return {"command": f"echo start {n} >> order.log; sleep 0.5; echo end {n} >> order.log"}

    calls = tool_calls(*(tool_call("shell", step(n)) for n in range(4)))
    async with session_stack(
        bus, workdir, nats_access, calls, reply("All four ran."), agent={"max_parallel_tools": 2}
    ):
        await say(bus, "run four", 1)
        final = await answer(bus)
    assert final.text == "All four ran."
    running, most = 0, 0
    for line in (workdir / "workspaces" / CONV / "order.log").read_text().splitlines():
        running += 1 if line.startswith("start") else -1
        most = max(most, running)
    assert most == 2  # two at once, never three
