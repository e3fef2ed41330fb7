"""`stellaclaw chat`: a terminal conversation over the bus (conversation `cli_<name>`).

Lines typed are published like a channel's messages (`sc.in.cli.<conv>`, all the `chat` login may
publish); outputs are read straight from the client stream SC_OUT_CLI with an ordered consumer, so
answers show as they arrive and nothing is lost while it reconnects.
"""

import asyncio
import re
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import assert_never

import msgspec
import uvloop
from nats.aio.subscription import Subscription
from nats.js.api import DeliverPolicy

from shared import bus, files, lifecycle, subjects
from shared import config as config_file
from shared.errors import ConfigError
from shared.ids import ConversationId, new_id
from shared.messages.contract import Chat, Sender
from shared.messages.inbound import MessageReceived
from shared.messages.outbound import (
    MAX_TEXT_BYTES,
    OUTPUT,
    SendFile,
    SendReply,
    SetReaction,
    ShowProgress,
    ShowTyping,
    StreamText,
)

NAME = re.compile(r"^[A-Za-z0-9_-]{1,48}$")
ANSWER_WAIT_S = 300.0  # after the end of input, how long to wait for answers still owed
LINE_LIMIT_BYTES = 32 * 1024 * 1024  # a longer line is refused after it is read, not a crash
FILES_DIR = "stellaclaw-files"  # where files the agent sends are saved, below the current directory


def main(config_path: Path, workdir: Path | None, name: str) -> int:
    if not NAME.match(name):
        raise ConfigError(f"chat: --name {name!r} must match [A-Za-z0-9_-]{{1,48}}")
    located = config_file.locate(config_path)
    where = (workdir or Path(located.workdir)).expanduser().resolve()
    secrets = [value for value in (located.bus.password, located.bus.token) if value]
    access = lifecycle.bus_access(located.bus, where, "chat", secrets)
    conv = ConversationId(f"cli_{name}")
    return uvloop.run(_talk(access, conv))


class Tally:
    """Messages sent and replies shown, so the end of input waits for the answers still owed."""

    def __init__(self) -> None:
        self.sent = 0
        self.replies = 0
        self.changed = asyncio.Condition()

    async def count_reply(self, settles: int = 1) -> None:
        async with self.changed:
            self.replies += settles
            self.changed.notify_all()

    async def owed(self) -> None:
        """Until every message sent has had its reply."""
        async with self.changed:
            await self.changed.wait_for(lambda: self.replies >= self.sent)


async def _talk(access: bus.BusAccess, conv: ConversationId) -> int:
    chat = Chat(conversation_id=conv, channel="cli", kind="cli")
    tally = Tally()
    async with bus.connected(access, "chat") as conn:
        outputs = await conn.js.subscribe(
            subjects.outbound("cli", conv),
            stream=subjects.OUT_CLI_STREAM,
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.NEW,
        )
        printer = asyncio.create_task(show(conn, outputs, tally))
        _say(f"Talking to Stellaclaw as {conv}. Type a message; Ctrl-D ends.")
        try:
            await _read_lines(conn, chat, tally)
            try:  # input ended: show the answers still on their way
                async with asyncio.timeout(ANSWER_WAIT_S):
                    await tally.owed()
            except TimeoutError:
                _say(f"(no answer within {ANSWER_WAIT_S:.0f} s; it will be in this chat later)")
        finally:
            printer.cancel()
            await outputs.unsubscribe()
    return 0


async def _read_lines(conn: bus.Connection, chat: Chat, tally: Tally) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=LINE_LIMIT_BYTES)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    sender = Sender(display_name="terminal")
    while line := await reader.readline():
        text = line.decode("utf-8", errors="replace").strip()
        if not text:
            continue
        if len(text.encode()) > MAX_TEXT_BYTES:
            _say(f"(not sent: {len(text):,} characters is more than one message may carry)")
            continue
        message = MessageReceived(
            chat=chat, sender=sender, text=text, received_at=datetime.now(UTC)
        )
        msg_id = subjects.cli_msg_id(chat.conversation_id, new_id())
        await bus.publish(
            conn, subjects.inbound("cli", chat.conversation_id), message, msg_id=msg_id
        )
        tally.sent += 1


async def show(conn: bus.Connection, outputs: Subscription, tally: Tally) -> None:
    """Print each output as it arrives; only a reply pays for a message sent."""
    async for msg in outputs.messages:
        try:
            output = OUTPUT.decode(msg.data)
        except msgspec.DecodeError:
            continue  # not ours to show
        match output:
            case ShowTyping():
                _say("… working")
            case SendReply():
                _say(await _text(conn, output))
                await tally.count_reply(output.settles)
            case SetReaction():  # a follow-up was read: not an answer, so nothing owed is paid
                _say(reaction_line(output))
            case SendFile():
                _say(await _saved(conn, output, Path(FILES_DIR)))
            case ShowProgress() | StreamText():  # Telegram's panel and drafts; `… working` says it
                pass
            case unhandled:
                assert_never(unhandled)


def reaction_line(reaction: SetReaction) -> str:
    return f"{reaction.emoji} (read; I'll take it in at the next step)"


async def _text(conn: bus.Connection, reply: SendReply) -> str:
    """The reply's text, read from `sc_files` when it was too long for the bus."""
    if reply.text_file is None:
        return reply.text
    text = await files.read_text(conn, reply.text_file)
    return f"(the answer {reply.text_file} is no longer stored)" if text is None else text


async def _saved(conn: bus.Connection, offered: SendFile, into: Path) -> str:
    """Save a file the agent sent into `into` (a new name when one is taken); the line to show."""
    data = await files.read_bytes(conn, offered.file.object_name)
    name = Path(offered.file.file_name).name or "file"
    if data is None:
        return f"📎 {name} (no longer stored)"
    target = await asyncio.to_thread(_save, into, name, data)
    caption = f": {offered.caption}" if offered.caption else ""
    return f"📎 {name} ({len(data):,} bytes) saved as {target}{caption}"


def _save(into: Path, name: str, data: bytes) -> Path:
    into.mkdir(exist_ok=True)
    target, number = into / name, 1
    while target.exists():
        number += 1
        target = into / f"{Path(name).stem}-{number}{Path(name).suffix}"
    target.write_bytes(data)
    return target


def _say(text: str) -> None:
    print(text, flush=True)  # noqa: T201 -- the chat client's output is the terminal
