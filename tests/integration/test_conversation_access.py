"""Authorization in the conversation service (SPEC §12.2) with a real nats-server: the one
refusal per chat, the admins' notifications and buttons, admin commands, and a rejected chat's
conversation ending."""

from datetime import UTC, datetime

from services.conversation.service import run
from services.conversation.state import STATE
from shared import subjects
from shared.access import ADMINS, CHAT_ACCESS
from shared.ids import ConversationId
from shared.messages.contract import Chat, Sender
from shared.messages.inbound import AccessRequested, ChatRemoved, MessageReceived
from shared.messages.outbound import OUTPUT, Button, SendReply
from shared.messages.session import SESSION_INPUT, CancelTurn, HandleMessage
from shared.messages.tools import END_WORK
from tests.kit.nats import TestBus
from tests.kit.services import make_runtime, running

ADMIN = 7
BOB = 55  # a stranger
TEAM = -100200  # a group
MODEL = {"provider": "openai_chat", "model": "gpt-test", "base_url": "http://x/v1"}


def config(admins: list[int]) -> dict[str, object]:
    return {
        "default_model": "main",
        "models": {"main": MODEL},
        "bus": {"in_partitions": 4},
        "telegram": {"bot_token": "1:x", "admin_user_ids": admins},
    }


def private(user_id: int) -> Chat:
    conv = ConversationId(f"tg_{user_id}")
    return Chat(conversation_id=conv, channel="telegram", kind="private", chat_id=user_id)


def group(chat_id: int) -> Chat:
    conv = ConversationId(f"tg_{chat_id}")
    return Chat(conversation_id=conv, channel="telegram", kind="group", chat_id=chat_id)


def bob() -> Sender:
    return Sender(user_id=BOB, display_name="Bob Stone", username="bobs")


def asked(chat: Chat, *, title: str = "", wants_admin: bool = False) -> AccessRequested:
    return AccessRequested(
        chat=chat,
        sender=bob(),
        chat_title=title,
        wants_admin=wants_admin,
        received_at=datetime.now(UTC),
    )


def says(chat: Chat, text: str, user_id: int) -> MessageReceived:
    sender = Sender(user_id=user_id, display_name="Ada")
    return MessageReceived(chat=chat, sender=sender, text=text, received_at=datetime.now(UTC))


async def send(bus: TestBus, message: AccessRequested | MessageReceived | ChatRemoved) -> int:
    return await bus.publish(subjects.inbound("telegram", message.chat.conversation_id), message)


async def reply(bus: TestBus, conv: str) -> SendReply:
    found = await bus.next(subjects.outbound("telegram", conv), OUTPUT)
    assert isinstance(found, SendReply)
    return found


async def test_a_stranger_gets_one_refusal_and_the_admin_a_notification_with_buttons(
    bus, workdir, nats_access
):
    runtime = make_runtime(config([ADMIN]), workdir, nats_access)
    await bus.watch(subjects.outbound("telegram", f"tg_{BOB}"))
    await bus.watch(subjects.outbound("telegram", f"tg_{ADMIN}"))
    async with running(runtime, run):
        await send(bus, asked(private(BOB)))
        refusal = await reply(bus, f"tg_{BOB}")
        notified = await reply(bus, f"tg_{ADMIN}")
        await send(bus, asked(private(BOB)))  # a second message: nothing more
        await send(bus, says(private(ADMIN), "/admin_chat_list", ADMIN))
        listing = await reply(bus, f"tg_{ADMIN}")
        await send(bus, says(private(BOB), "/admin_chat_list", BOB))  # marks the end of Bob's
        # Bob's chat got the refusal once, then only the reply to his /admin_chat_list (which
        # came after the second request, in order).
        after = await reply(bus, f"tg_{BOB}")
    assert refusal.text == (
        f"Sorry, this is a private assistant. Your Telegram user id is {BOB}; ask the owner "
        "to allow it."
    )
    assert notified.text == (
        f"🔔 Bob Stone (@bobs, id {BOB}) wants to use the bot in a private chat."
    )
    assert notified.buttons == [
        [
            Button(text="Approve", data=f"/admin_chat_approve tg_{BOB}"),
            Button(text="Reject", data=f"/admin_chat_reject tg_{BOB}"),
        ]
    ]
    title, pending, line = listing.text.splitlines()
    assert (title, pending) == ("Chats", "Pending:")
    assert line.startswith(f"tg_{BOB} · Bob Stone · 20")
    assert line.endswith(f" — /admin_chat_approve tg_{BOB}")
    auth = await bus.js.key_value(subjects.AUTH_BUCKET)
    entry = await auth.get(subjects.auth_chat_key(f"tg_{BOB}"))
    record = CHAT_ACCESS.decode(entry.value or b"")
    assert (record.access, record.requested_by) == ("pending", BOB)
    assert after.text == "Admin commands work only in a private chat with an admin."


async def test_an_admin_approves_a_group_and_rejecting_it_ends_its_conversation(
    bus, workdir, nats_access
):
    runtime = make_runtime(config([ADMIN]), workdir, nats_access)
    conv = f"tg_{TEAM}"
    await bus.watch(subjects.outbound("telegram", conv))
    await bus.watch(subjects.outbound("telegram", f"tg_{ADMIN}"))
    await bus.watch(subjects.TOOL_END_ALL)
    await bus.watch(subjects.session_input(f"{conv}_fg1"))
    async with running(runtime, run):
        await send(bus, asked(group(TEAM), title="Team"))
        refusal = await reply(bus, conv)
        notified = await reply(bus, f"tg_{ADMIN}")
        await send(bus, says(private(ADMIN), f"/admin_chat_approve {conv}", ADMIN))
        approved = await reply(bus, f"tg_{ADMIN}")
        told = await reply(bus, conv)
        await send(bus, says(group(TEAM), "hello team", BOB))  # served now (ingress lets it in)
        handled = await bus.next(subjects.session_input(f"{conv}_fg1"), SESSION_INPUT)
        await send(bus, says(private(ADMIN), f"/admin_chat_reject {conv}", ADMIN))
        rejected = await reply(bus, f"tg_{ADMIN}")
        cancel = await bus.next(subjects.session_input(f"{conv}_fg1"), SESSION_INPUT)
        ending = await bus.next(subjects.TOOL_END_ALL, END_WORK)
        await send(bus, says(private(ADMIN), "/admin_chat_approve tg_404", ADMIN))
        unknown = await reply(bus, f"tg_{ADMIN}")
    assert refusal.text == (
        f"This group is not approved yet. An admin can approve it with /admin_chat_approve {conv}."
    )
    assert notified.text == f'🔔 Bob Stone (@bobs, id {BOB}) wants to use the bot in group "Team".'
    assert approved.text == f"✅ Approved Team ({conv})."
    assert told.text == "✅ An admin approved this chat. Send a message to start."
    assert isinstance(handled, HandleMessage)
    assert rejected.text == f"🚫 Rejected Team ({conv})."
    assert isinstance(cancel, CancelTurn)
    assert cancel.reason == "removed"
    assert (ending.conversation_id, ending.removed) == (conv, True)
    assert ending.workspace is not None
    assert ending.workspace.path == f"workspaces/{conv}"
    assert unknown.text == "No chat tg_404 is known."
    state = STATE.decode((await (await bus.js.key_value(subjects.CONV_BUCKET)).get(conv)).value)
    assert state.removed


async def test_a_removed_conversation_starts_afresh_on_a_new_session(bus, workdir, nats_access):
    runtime = make_runtime(config([ADMIN]), workdir, nats_access)
    conv = f"tg_{TEAM}"
    await bus.watch(subjects.TOOL_END_ALL)
    await bus.watch(subjects.session_input(f"{conv}_fg2"))
    async with running(runtime, run):
        await send(bus, says(group(TEAM), "first", ADMIN))
        await send(bus, ChatRemoved(chat=group(TEAM), received_at=datetime.now(UTC)))
        ending = await bus.next(subjects.TOOL_END_ALL, END_WORK)
        await send(bus, says(group(TEAM), "back again", ADMIN))
        handled = await bus.next(subjects.session_input(f"{conv}_fg2"), SESSION_INPUT)
    assert ending.removed
    assert isinstance(handled, HandleMessage)
    assert handled.message.text == "back again"


async def test_admin_authorize_makes_the_first_user_the_admin_when_there_is_none(
    bus, workdir, nats_access
):
    runtime = make_runtime(config([]), workdir, nats_access)
    await bus.watch(subjects.outbound("telegram", f"tg_{BOB}"))
    async with running(runtime, run):
        await send(bus, asked(private(BOB), wants_admin=True))
        claimed = await reply(bus, f"tg_{BOB}")
        await send(bus, says(private(BOB), "/admin_authorize", BOB))
        again = await reply(bus, f"tg_{BOB}")
        await send(bus, says(private(BOB), "/admin_chat_list", BOB))
        listing = await reply(bus, f"tg_{BOB}")
    assert claimed.text == f"✅ You are now the admin of this bot (user id {BOB})."
    assert again.text == "This bot already has an admin."
    assert listing.text == "No chat has asked for access yet."
    admins = await (await bus.js.key_value(subjects.AUTH_BUCKET)).get(subjects.AUTH_ADMINS_KEY)
    assert ADMINS.decode(admins.value or b"").user_ids == [BOB]


async def test_admin_commands_outside_an_admins_private_chat_are_refused(bus, workdir, nats_access):
    runtime = make_runtime(config([ADMIN]), workdir, nats_access)
    conv = f"tg_{TEAM}"
    await bus.watch(subjects.outbound("telegram", conv))
    async with running(runtime, run):
        await send(bus, says(group(TEAM), "/admin_chat_list", ADMIN))
        in_group = await reply(bus, conv)
    assert in_group.text == "Admin commands work only in a private chat with an admin."
