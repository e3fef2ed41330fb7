"""Conversation with a real nats-server: albums merged after quiet, notices said before a
message goes on, `/model` with its keyboard, `/reasoning` (SPEC §12.3, §12.4)."""

from datetime import UTC, datetime

import msgspec
from nats.js.errors import KeyNotFoundError

from services.conversation.service import run
from services.conversation.state import STATE
from shared import subjects
from shared.ids import ConversationId
from shared.messages.contract import Attachment, Chat, Sender
from shared.messages.inbound import MessageReceived
from shared.messages.outbound import OUTPUT, Button, SendReply
from shared.messages.session import SESSION_INPUT, HandleMessage
from tests.kit.nats import TestBus
from tests.kit.services import make_runtime, running
from tests.kit.waiting import eventually_async

ADA = 42
CONV = f"tg_{ADA}"
MODEL = {"provider": "openai_chat", "model": "gpt-test", "base_url": "http://x/v1"}
THINKER = MODEL | {"model": "o-test", "capabilities": ["tools", "reasoning"]}
CONFIG: dict[str, object] = {
    "default_model": "main",
    "models": {
        "main": MODEL,
        "thinker": THINKER,
        "spare": MODEL,
        "hidden": MODEL | {"selectable": False},
    },
    "bus": {"in_partitions": 4},
    "telegram": {"bot_token": "1:x", "allowed_user_ids": [ADA]},
}
CHAT = Chat(conversation_id=ConversationId(CONV), channel="telegram", kind="private", chat_id=ADA)


def photo(n: int) -> Attachment:
    return Attachment(
        object_name=f"{CONV}/{n}-photo.jpg",
        file_name=f"photo_{n}.jpg",
        media_type="image/jpeg",
        size=100 + n,
        path=f"upload/20261207-100000-photo_{n}.jpg",
    )


def says(text: str, **fields: object) -> MessageReceived:
    message = MessageReceived(
        chat=CHAT,
        sender=Sender(user_id=ADA, display_name="Ada"),
        text=text,
        received_at=datetime.now(UTC),
    )
    return msgspec.structs.replace(message, **fields)


async def send(bus: TestBus, message: MessageReceived) -> int:
    return await bus.publish(subjects.inbound("telegram", CONV), message)


async def handled(bus: TestBus) -> HandleMessage:
    found = await bus.next(subjects.session_input(f"{CONV}_fg1"), SESSION_INPUT)
    assert isinstance(found, HandleMessage)
    return found


async def reply(bus: TestBus) -> SendReply:
    found = await bus.next(subjects.outbound("telegram", CONV), OUTPUT)
    assert isinstance(found, SendReply)
    return found


async def test_an_album_of_three_photos_becomes_one_message_before_the_next(
    bus, workdir, nats_access
):
    runtime = make_runtime(CONFIG, workdir, nats_access)
    await bus.watch(subjects.session_input(f"{CONV}_fg1"))
    async with running(runtime, run):
        part = says("our trip", media_group_id="g1", attachments=[photo(1)])
        first = await send(bus, msgspec.structs.replace(part, platform_message_id=1))
        for n in (2, 3, 3):  # the third part delivered twice
            part = says("", media_group_id="g1", attachments=[photo(n)], platform_message_id=n)
            await send(bus, part)
        album = await handled(bus)
        await send(bus, says("", media_group_id="g2", attachments=[photo(4)]))
        await send(bus, says("and one more thing"))  # passes the second album on first
        second = await handled(bus)
        after = await handled(bus)
    assert album.input_seq == first
    assert album.message.text == "our trip"
    assert [a.file_name for a in album.message.attachments] == [
        "photo_1.jpg",
        "photo_2.jpg",
        "photo_3.jpg",
    ]
    assert [a.file_name for a in second.message.attachments] == ["photo_4.jpg"]
    assert after.message.text == "and one more thing"
    assert second.input_seq < after.input_seq


async def test_a_notice_is_said_and_a_message_with_nothing_else_is_not_a_turn(
    bus, workdir, nats_access
):
    runtime = make_runtime(CONFIG, workdir, nats_access)
    too_big = msgspec.structs.replace(photo(9), object_name="", error="file is 25.0 MB")
    notice = "⚠️ big.mp4 is 25.0 MB; Telegram lets bots download files up to 20 MB."
    await bus.watch(subjects.session_input(f"{CONV}_fg1"))
    await bus.watch(subjects.outbound("telegram", CONV))
    async with running(runtime, run):
        await send(bus, says("", attachments=[too_big], notices=[notice]))
        first = await reply(bus)
        await send(bus, says("look at this", attachments=[too_big], notices=[notice]))
        second = await reply(bus)
        taken = await handled(bus)
    assert first.text == second.text == notice
    assert taken.message.text == "look at this"
    assert taken.message.attachments == [too_big]  # the model reads why it is missing


async def test_model_shows_a_keyboard_and_switches(bus, workdir, nats_access):
    runtime = make_runtime(CONFIG, workdir, nats_access)
    await bus.watch(subjects.outbound("telegram", CONV))
    await bus.watch(subjects.session_input(f"{CONV}_fg1"))
    async with running(runtime, run):
        replies = []
        for text in ("/model", "/model thinker", "/model thinker", "/model hidden", "/model"):
            await send(bus, says(text))
            replies.append(await reply(bus))
        await send(bus, says("hi"))
        taken = await handled(bus)
    shown, switched, same, unknown, again = replies
    assert shown.text == (
        "Current model: main (openai_chat · gpt-test · 128k context)\nChoose a model:"
    )
    assert shown.buttons == [
        [Button(text="✓ main", data="/model main"), Button(text="thinker", data="/model thinker")],
        [Button(text="spare", data="/model spare")],
    ]
    assert switched.text == "Model switched to thinker."
    assert same.text == "Already using thinker."
    assert unknown.text == "Unknown model: hidden. Available: main, thinker, spare."
    assert again.buttons[0][1] == Button(text="✓ thinker", data="/model thinker")
    assert taken.settings.model == "thinker"


async def test_reasoning_is_kept_per_chat_and_stamped_into_inputs(bus, workdir, nats_access):
    runtime = make_runtime(CONFIG, workdir, nats_access)
    await bus.watch(subjects.outbound("telegram", CONV))
    await bus.watch(subjects.session_input(f"{CONV}_fg1"))
    async with running(runtime, run):
        replies = []
        for text in ("/reasoning", "/reasoning high", "/reasoning loud", "/reasoning"):
            await send(bus, says(text))
            replies.append((await reply(bus)).text)
        await send(bus, says("think"))
        taken = await handled(bus)
    assert replies == [
        "Reasoning effort: default (model default: none). Options: default, minimal, low, "
        "medium, high, xhigh.",
        "Reasoning effort set to high. main ignores reasoning settings.",
        "Usage: /reasoning [default|minimal|low|medium|high|xhigh]",
        "Reasoning effort: high (model default: none). Options: default, minimal, low, "
        "medium, high, xhigh.",
    ]
    assert taken.settings.reasoning == "high"


async def test_an_album_left_waiting_by_a_stopped_instance_is_passed_on_by_the_next(
    bus, workdir, nats_access
):
    runtime = make_runtime(CONFIG, workdir, nats_access)
    await bus.watch(subjects.session_input(f"{CONV}_fg1"))
    conv_kv = await bus.js.key_value(subjects.CONV_BUCKET)

    async def both_parts_kept() -> bool:
        try:
            entry = await conv_kv.get(CONV)
        except KeyNotFoundError:
            return False
        album = STATE.decode(entry.value or b"").album
        return album is not None and len(album.parts) == 2

    async with running(runtime, run):
        for n in (1, 2):
            part = says(f"p{n}", media_group_id="g9", attachments=[photo(n)])
            await send(bus, msgspec.structs.replace(part, platform_message_id=n))
        await eventually_async(both_parts_kept, what="both parts kept")

    async def marker_gone() -> bool:
        return sorted(await conv_kv.keys()) == [CONV]

    async with running(runtime, run):
        album = await handled(bus)
        await eventually_async(marker_gone, what="the album's marker removed")
    assert album.message.text == "p1\np2"
    assert len(album.message.attachments) == 2
