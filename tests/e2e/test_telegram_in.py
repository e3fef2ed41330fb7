"""Telegram in, end to end (SPEC §12.1-§12.4): `stellaclaw up` against the kit's Bot API server
and model server. A private chat with a file, photos for a vision model, an album, a stranger
approved with the admin's button, a group that speaks only when mentioned, forum topics, and a
SIGKILL of ingress while it downloads a file.

Each test prints the chat as the user saw it (`pytest -s` shows the transcripts)."""

import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import pytest_asyncio

from services.ingress_telegram import files
from shared import subjects
from tests.kit import stack as sc_stack
from tests.kit.attachments import chat_media, png
from tests.kit.llm_api import OpenAIChatServer, llm_api, reply, tool_call
from tests.kit.telegram_api import TelegramAPIServer, telegram_api
from tests.kit.waiting import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]
ADA = 4242  # the admin
BOB = 5151  # a stranger, then approved
TEAM = -1004242  # a group
FORUM = -1005252  # a forum supergroup
KEY = "sk-e2e-telegram-in"
SECRET = "pineapple-71"  # in the stranger's first message: must be stored nowhere


class World:
    def __init__(self, stack, telegram: TelegramAPIServer, llm: OpenAIChatServer) -> None:
        self.stack = stack
        self.telegram = telegram
        self.llm = llm


def write_config(path: Path, llm: str, telegram: str) -> None:
    path.write_text(
        f"""
default_model = "main"

[models.main]
provider = "openai_chat"
base_url = "{llm}"
api_key = "${{{sc_stack.KEY_VARIABLE}}}"
model = "gpt-e2e"

[models.vision]
provider = "openai_chat"
base_url = "{llm}"
api_key = "${{{sc_stack.KEY_VARIABLE}}}"
model = "gpt-e2e-vision"
capabilities = ["tools", "image_in"]

[telegram]
bot_token = "${{{sc_stack.TOKEN_VARIABLE}}}"
api_base = "{telegram}"
admin_user_ids = [{ADA}]

[bus]
in_partitions = 4
""",
        encoding="utf-8",
    )


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory) -> AsyncIterator[World]:
    root: Path = tmp_path_factory.mktemp("e2e-telegram-in")
    with pytest.MonkeyPatch.context() as env:
        async with telegram_api() as telegram, llm_api(api_key=KEY) as llm:
            telegram.outbox.hide_panels = True  # these tests read the answers
            telegram.bot_name = "Ada's Helper"
            env.setenv(sc_stack.KEY_VARIABLE, KEY)
            env.setenv(sc_stack.TOKEN_VARIABLE, telegram.token)
            config = root / "stellaclaw.toml"
            write_config(config, llm.base_url, telegram.base_url)
            async with sc_stack.stack(config, root / "workdir") as running:
                await running.wait_ready(sc_stack.SERVICES)
                yield World(running, telegram, llm)


def show(world: World, chat_id: int, title: str, said: list[str]) -> None:
    """Print what the user and the bot said, for the issue's transcript."""
    print(f"\n--- {title} ---")  # noqa: T201 -- the transcript is the point
    for line in said:
        print(line)  # noqa: T201


def sent_at(world: World, update_id: int) -> datetime:
    message = world.telegram.updates.get(update_id, "message")
    return datetime.fromtimestamp(int(message["date"]), UTC)  # type: ignore[call-overload]


async def test_a_private_chat_with_a_document_the_model_reads_under_upload(world):
    data = b"Launch window: Tuesday 06:40 UTC\n"
    update_id = world.telegram.user_sends_file(
        ADA,
        "document",
        data,
        file_name="plan notes.txt",
        mime_type="text/plain",
        caption="What does my file say?",
    )
    path = files.upload_path(files.safe_name("plan notes.txt"), sent_at(world, update_id))
    world.llm.script(
        tool_call("file_read", {"file_path": path}),
        reply("Your notes say the launch window is **Tuesday 06:40 UTC**."),
    )
    answer = await world.telegram.next_sent(ADA, timeout_s=45)
    first, second = world.llm.requests[-2:]
    assert first.last_user_text is not None
    assert first.last_user_text.startswith(f"What does my file say?\n\nAttachments:\n- {path}")
    assert "Launch window: Tuesday 06:40 UTC" in (second.tool_messages[-1].text or "")
    assert answer.text == "Your notes say the launch window is Tuesday 06:40 UTC."
    assert (world.stack.workdir / "workspaces" / f"tg_{ADA}" / path).read_bytes() == data
    assert world.telegram.reactions(ADA)[-1] == (world.telegram.message_id(update_id), "👀")
    show(
        world,
        ADA,
        "private chat with a file",
        [
            "Ada: [document plan notes.txt] What does my file say?",
            f"  (the model calls file_read {path})",
            f"Bot: {answer.text}",
        ],
    )


async def test_start_greets_with_the_bots_name_and_unknown_commands_point_to_help(world):
    world.telegram.user_says(ADA, "/start")
    greeting = await world.telegram.next_sent(ADA, timeout_s=30)
    world.telegram.user_says(ADA, "/frobnicate now")
    unknown = await world.telegram.next_sent(ADA, timeout_s=30)
    lines = greeting.text.splitlines()
    assert lines[:2] == ["👋 Hi, I'm Ada's Helper.", "Stellaclaw — commands"]
    assert lines[-1] == "Send a message while I work to steer me; I read it at the next step."
    assert unknown.text == "Unknown command: /frobnicate. Send /help for the list."


async def test_a_photo_reaches_a_vision_model_as_an_image_and_a_text_model_as_a_note(world):
    world.telegram.user_says(ADA, "/model vision")
    switched = await world.telegram.next_sent(ADA, timeout_s=30)
    world.llm.script(reply("A small orange square."), reply("I can only read its name."))
    world.telegram.user_sends_file(ADA, "photo", png(64, 48), caption="what is this?")
    seen = await world.telegram.next_sent(ADA, timeout_s=45)
    vision = world.llm.requests[-1]
    world.telegram.user_says(ADA, "/model main")
    await world.telegram.next_sent(ADA, timeout_s=30)
    world.telegram.user_sends_file(ADA, "photo", png(32, 32), caption="and this?")
    unseen = await world.telegram.next_sent(ADA, timeout_s=45)
    text_only = world.llm.requests[-1]
    assert switched.text == "Model switched to vision."
    assert vision.body["model"] == "gpt-e2e-vision"
    assert [part.type for part in chat_media(vision)][-1:] == ["image_url"]
    assert seen.text == "A small orange square."
    assert chat_media(text_only) == [] or text_only.body["model"] == "gpt-e2e"
    assert "[Attachment not shown to the model: upload/" in (text_only.last_user_text or "")
    assert unseen.text == "I can only read its name."


async def test_an_album_of_three_photos_becomes_one_message(world):
    world.llm.script(reply("Three photos of one trip."))
    before = len(world.llm.requests)
    for n in range(3):
        caption = "our trip" if n == 0 else None
        world.telegram.user_sends_file(
            ADA, "photo", png(20 + n, 20), caption=caption, media_group_id="album-1"
        )
    answer = await world.telegram.next_sent(ADA, timeout_s=45)
    assert answer.text == "Three photos of one trip."
    assert len(world.llm.requests) == before + 1
    text = world.llm.requests[-1].last_user_text or ""
    assert text.startswith("our trip\n\nAttachments:\n")
    assert text.count("- upload/") == 3


async def test_a_stranger_is_refused_once_and_served_after_the_admin_approves(world):
    world.telegram.user_says(BOB, f"hello, the code is {SECRET}", first_name="Bob")
    refusal = await world.telegram.next_sent(BOB, timeout_s=30)
    notice = await world.telegram.next_sent(ADA, timeout_s=30)
    second = world.telegram.user_says(BOB, "hello?", first_name="Bob")
    await eventually(lambda: (world.telegram.confirmed_offset or 0) > second, what="offset passed")
    for partition in range(4):  # conversation took it (and said nothing)
        durable = subjects.durable("conversation", f"p{partition}")
        await world.stack.wait_drained(subjects.IN_STREAM, durable)
    approve = next(data for row in notice.buttons for text, data in row if text == "Approve")
    pressed = world.telegram.user_presses(ADA, notice.message_id, approve)
    approved = await world.telegram.next_sent(ADA, timeout_s=30)
    told = await world.telegram.next_sent(BOB, timeout_s=30)
    world.llm.script(reply("Hello Bob, how can I help?"))
    world.telegram.user_says(BOB, "now?", first_name="Bob")
    served = await world.telegram.next_sent(BOB, timeout_s=45)
    assert refusal.text == (
        f"Sorry, this is a private assistant. Your Telegram user id is {BOB}; ask the owner "
        "to allow it."
    )
    assert notice.text == f"🔔 Bob ({'id ' + str(BOB)}) wants to use the bot in a private chat."
    assert world.telegram.answer_to(pressed) is not None
    assert approved.text == f"✅ Approved Bob (tg_{BOB})."
    assert told.text == "✅ An admin approved this chat. Send a message to start."
    assert served.text == "Hello Bob, how can I help?"
    assert world.telegram.transcript(BOB) == [refusal.text, told.text, served.text]
    for stream in (
        subjects.IN_STREAM,
        subjects.SESSION_STREAM,
        subjects.HISTORY_STREAM,
        subjects.OUT_STREAM,
        subjects.EVENTS_STREAM,
    ):
        assert not await holds(world, stream, SECRET.encode()), stream
    show(
        world,
        BOB,
        "a stranger approved",
        [
            f"Bob: hello, the code is {SECRET}",
            f"Bot: {refusal.text}",
            f"(to Ada) Bot: {notice.text} [Approve] [Reject]",
            "Bob: hello?   (nothing: one refusal per chat)",
            "(Ada presses Approve)",
            f"(to Ada) Bot: {approved.text}",
            f"Bot: {told.text}",
            "Bob: now?",
            f"Bot: {served.text}",
        ],
    )


async def holds(world: World, stream: str, needle: bytes) -> bool:
    js = world.stack.nc.jetstream()
    state = (await js.stream_info(stream)).state
    for seq in range(state.first_seq, state.last_seq + 1) if state.messages else ():
        try:
            stored = await js.get_msg(stream, seq)
        except Exception:  # noqa: BLE001 -- a deleted message in between
            continue
        if needle in (stored.data or b""):
            return True
    return False


async def test_a_group_speaks_only_when_mentioned_and_answers_in_the_group(world):
    bot = world.telegram.bot_username
    world.telegram.user_says(TEAM, "who is up for lunch?", user_id=ADA, chat_type="supergroup")
    world.llm.script(reply("It is 12:30 — lunch time."))
    world.telegram.user_says(TEAM, f"@{bot} what time is it?", user_id=ADA, chat_type="supergroup")
    answer = await world.telegram.next_sent(TEAM, timeout_s=45)
    assert answer.text == "It is 12:30 — lunch time."
    assert world.llm.requests[-1].last_user_text == "what time is it?"
    assert world.telegram.transcript(TEAM) == [answer.text]
    show(
        world,
        TEAM,
        "a group with a mention",
        [
            "Ada: who is up for lunch?   (nothing: not for the bot)",
            f"Ada: @{bot} what time is it?",
            f"Bot: {answer.text}",
        ],
    )


async def test_two_forum_topics_are_two_conversations_answered_in_their_threads(world):
    bot = world.telegram.bot_username
    world.llm.script(reply("Topic one answer."))
    world.telegram.user_says(
        FORUM, f"@{bot} first", user_id=ADA, chat_type="supergroup", message_thread_id=3
    )
    one = await world.telegram.next_sent(FORUM, timeout_s=45)
    world.llm.script(reply("Topic two answer."))
    world.telegram.user_says(
        FORUM, f"@{bot} second", user_id=ADA, chat_type="supergroup", message_thread_id=4
    )
    two = await world.telegram.next_sent(FORUM, timeout_s=45)
    assert (one.text, one.message_thread_id) == ("Topic one answer.", 3)
    assert (two.text, two.message_thread_id) == ("Topic two answer.", 4)
    assert await world.stack.sessions(f"tg_{FORUM}_t3") == [f"tg_{FORUM}_t3_fg1"]
    assert await world.stack.sessions(f"tg_{FORUM}_t4") == [f"tg_{FORUM}_t4_fg1"]


async def test_a_sigkill_of_ingress_while_it_downloads_loses_and_duplicates_nothing(world):
    world.telegram.delay("download", 60)
    calls = len(world.telegram.calls)
    update_id = world.telegram.user_sends_file(
        ADA, "document", b"kill me gently\n", file_name="fragile.txt", caption="read this"
    )
    await eventually(
        lambda: any(c.method == "download" for c in world.telegram.calls[calls:]),
        timeout_s=30,
        what="the download started",
    )
    old_pid = world.stack.kill("ingress_telegram")
    world.telegram.delay("download", 0)
    world.llm.script(reply("Got fragile.txt."))
    await world.stack.wait_service("ingress_telegram", not_pid=old_pid)
    answer = await world.telegram.next_sent(ADA, timeout_s=60)
    await world.stack.wait_drained(subjects.OUT_STREAM, subjects.durable("delivery", "telegram"))
    msg_id = subjects.telegram_update_msg_id(world.telegram.bot_id, update_id).encode()
    assert answer.text == "Got fragile.txt."
    assert world.telegram.transcript(ADA).count("Got fragile.txt.") == 1
    assert sum("fragile.txt" in (r.last_user_text or "") for r in world.llm.requests) == 1
    assert await holds_once(world, msg_id)


async def holds_once(world: World, msg_id: bytes) -> bool:
    """The inbound stream holds the update's message exactly once."""
    js = world.stack.nc.jetstream()
    state = (await js.stream_info(subjects.IN_STREAM)).state
    count = 0
    for seq in range(state.first_seq, state.last_seq + 1):
        stored = await js.get_msg(subjects.IN_STREAM, seq)
        if (stored.headers or {}).get(subjects.MSG_ID_HEADER, "").encode() == msg_id:
            count += 1
    return count == 1


async def test_a_sigkill_of_ingress_after_a_download_before_its_publish_loses_nothing(
    world,
):
    data = os.urandom(12 * 1024 * 1024)  # stored in sc_files in ~100 chunks: time to be killed
    in_before = await last_seq(world)
    update_id = world.telegram.user_sends_file(
        ADA, "document", data, file_name="big.bin", caption="keep this one"
    )
    await eventually(
        lambda: world.telegram.downloads(update_id) >= 1, timeout_s=30, what="the download"
    )
    old_pid = world.stack.kill("ingress_telegram")
    assert await last_seq(world) == in_before  # killed before the publish
    world.llm.script(reply("Got big.bin."))
    await world.stack.wait_service("ingress_telegram", not_pid=old_pid)
    answer = await world.telegram.next_sent(ADA, timeout_s=60)
    await world.stack.wait_drained(subjects.OUT_STREAM, subjects.durable("delivery", "telegram"))
    msg_id = subjects.telegram_update_msg_id(world.telegram.bot_id, update_id).encode()
    assert answer.text == "Got big.bin."
    assert world.telegram.downloads(update_id) == 2  # fetched again after the restart
    assert world.telegram.transcript(ADA).count("Got big.bin.") == 1
    assert await holds_once(world, msg_id)
    placed = world.stack.workdir / "workspaces" / f"tg_{ADA}" / "upload"
    assert [p.read_bytes() == data for p in placed.glob("*big.bin")] == [True]


async def last_seq(world: World) -> int:
    state = (await world.stack.nc.jetstream().stream_info(subjects.IN_STREAM)).state
    return int(state.last_seq)
