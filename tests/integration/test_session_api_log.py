"""SPEC §7.6 through the real session service: with `logging.api_bodies = "full"` each model call
of a turn is one redacted line of `logs/api/<session>/<turn>.jsonl` under the workdir."""

import msgspec

from tests.integration.test_session import SESSION, answer, say, session_stack
from tests.kit.llm_api import reply, tool_call


async def test_every_model_call_of_a_turn_is_logged_with_its_key_redacted(
    bus, workdir, nats_access
):
    steps = (tool_call("shell", {"command": "echo hi"}), reply("It said hi."))
    logging = {"api_bodies": "full"}
    async with session_stack(bus, workdir, nats_access, *steps, logging=logging):
        await say(bus, "say hi", 1)
        final = await answer(bus)

    assert final.text == "It said hi."
    path = workdir / "logs" / "api" / SESSION / f"{SESSION}_t1.jsonl"
    lines = [msgspec.json.decode(line) for line in path.read_bytes().splitlines()]
    assert [line["status"] for line in lines] == [200, 200]
    for line in lines:
        headers = {name.lower(): value for name, value in line["request_headers"].items()}
        assert headers["authorization"] == "***"
    assert '"say hi"' in lines[0]["request_body"]
    assert lines[1]["response_body"].endswith("data: [DONE]\n\n")  # the stream as read
    assert b'"k"' not in path.read_bytes()  # the key itself is nowhere
    assert oct(path.stat().st_mode & 0o777) == "0o600"
