"""`stellaclaw chat` against `stellaclaw up` without Telegram: the stack tried from a terminal."""

import asyncio

import pytest

from tests.kit import stack as sc_stack
from tests.kit.llm_api import llm_api, reply

pytestmark = pytest.mark.e2e
CONFIG = """
default_model = "main"
shutdown_grace_s = 5

[models.main]
provider = "openai_chat"
base_url = "{base_url}"
model = "gpt-chat"
api_key = "${{STELLACLAW_E2E_KEY}}"
"""


async def read_until(stream: asyncio.StreamReader, wanted: str, timeout_s: float = 30) -> list[str]:
    lines: list[str] = []
    async with asyncio.timeout(timeout_s):
        while wanted not in lines:
            line = await stream.readline()
            assert line, f"chat ended before {wanted!r}; it printed {lines!r}"
            lines.append(line.decode().rstrip("\n"))
    return lines


async def test_chat_talks_to_the_stack_over_the_bus(tmp_path, monkeypatch):
    monkeypatch.setenv(sc_stack.KEY_VARIABLE, "sk-chat")  # `up` needs it; `chat` does not
    async with llm_api(api_key="sk-chat") as llm:
        llm.script(reply("Hello, terminal."), reply("Second answer."), reply("Piped answer."))
        config = tmp_path / "stellaclaw.toml"
        config.write_text(CONFIG.format(base_url=llm.base_url))
        workdir = tmp_path / "workdir"
        async with sc_stack.stack(config, workdir) as running:
            await running.wait_ready(("conversation", "session", "tools", "delivery"))
            assert not (workdir / "run" / "ingress_telegram.pid").exists()
            second = await asyncio.create_subprocess_exec(
                sc_stack.stellaclaw(),
                *("up", "--config", str(config), "--workdir", str(workdir)),
                stderr=asyncio.subprocess.PIPE,
            )
            _, refused = await asyncio.wait_for(second.communicate(), 30)
            assert second.returncode == 2
            assert b"a stellaclaw up (or a service or nats-server it started) still runs" in refused
            chat = await asyncio.create_subprocess_exec(
                sc_stack.stellaclaw(),
                *("chat", "--config", str(config), "--workdir", str(workdir), "--name", "ada"),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                env={"PATH": "/usr/bin:/bin"},  # no secrets: a client needs none
            )
            assert chat.stdin is not None
            assert chat.stdout is not None
            first = await read_until(
                chat.stdout, "Talking to Stellaclaw as cli_ada. Type a message; Ctrl-D ends."
            )
            chat.stdin.write(b"hello\n")
            answer = await read_until(chat.stdout, "Hello, terminal.")
            chat.stdin.write(b"/status\n")
            status = await read_until(chat.stdout, "📊 Status")
            chat.stdin.write(b"again\n")
            await read_until(chat.stdout, "Second answer.")
            chat.stdin.close()
            assert await asyncio.wait_for(chat.wait(), 15) == 0
            piped = await asyncio.create_subprocess_exec(  # input ends before the answers come
                sc_stack.stellaclaw(),
                *("chat", "--config", str(config), "--workdir", str(workdir), "--name", "bo"),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                env={"PATH": "/usr/bin:/bin"},
            )
            printed, _ = await asyncio.wait_for(piped.communicate(b"/status\npiped question\n"), 30)
            assert piped.returncode == 0
    assert first[-1].startswith("Talking to Stellaclaw")
    assert "… working" in answer
    assert status[-1] == "📊 Status"
    assert llm.requests[0].last_user_text == "hello"
    assert "📊 Status" in printed.decode()
    assert printed.decode().rstrip().endswith("Piped answer.")
    assert [m.text for m in llm.requests[1].messages[1:]] == ["hello", "Hello, terminal.", "again"]


async def test_chat_shows_an_answer_too_long_for_one_bus_message_and_refuses_such_a_line(
    tmp_path, monkeypatch
):
    monkeypatch.setenv(sc_stack.KEY_VARIABLE, "sk-chat")
    async with llm_api(api_key="sk-chat") as llm:
        llm.script(reply("Long line.\n" * 30_000))  # 330 KB: stored in sc_files
        config = tmp_path / "stellaclaw.toml"
        config.write_text(CONFIG.format(base_url=llm.base_url))
        async with sc_stack.stack(config, tmp_path / "workdir") as running:
            await running.wait_ready(("conversation", "session", "tools", "delivery"))
            piped = await asyncio.create_subprocess_exec(
                sc_stack.stellaclaw(),
                *("chat", "--config", str(config), "--workdir", str(tmp_path / "workdir")),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                env={"PATH": "/usr/bin:/bin"},
            )
            huge = b"x" * 300_000 + b"\n"
            printed, _ = await asyncio.wait_for(piped.communicate(huge + b"write a lot\n"), 60)
        llm.assert_done()
    assert piped.returncode == 0
    text = printed.decode()
    assert "(not sent: 300,000 characters is more than one message may carry)" in text
    assert text.count("Long line.") == 30_000
    assert [m.text for m in llm.requests[0].messages[1:]] == ["write a lot"]
