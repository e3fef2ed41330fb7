"""Typing loops: repeated while a turn runs, ended by its answer, by stop, or by the cap.

The Bot API is a recording fake of the `TelegramApi` seam; its `sendMessage` and
`setMessageReaction` are never called here.
"""

import asyncio

from services.delivery.bot_api import (
    RejectedError,
    SendChatAction,
    SendMessage,
    SetMessageReaction,
)
from services.delivery.typing_indicator import TypingIndicators
from shared.errors import TransientError
from tests.kit.waiting import eventually

TYPING = SendChatAction(chat_id=42, action="typing", message_thread_id=7)


class RecordingApi:
    """Records chat actions; raises the scripted errors first."""

    def __init__(self, *failures: Exception) -> None:
        self.actions: list[SendChatAction] = []
        self.failures = list(failures)

    async def send_message(self, request: SendMessage) -> int:
        raise AssertionError(f"unexpected sendMessage to {request.chat_id}")

    async def send_chat_action(self, request: SendChatAction) -> None:
        self.actions.append(request)
        if self.failures:
            raise self.failures.pop(0)

    async def set_message_reaction(self, request: SetMessageReaction) -> None:
        raise AssertionError(f"unexpected setMessageReaction in {request.chat_id}")


async def test_typing_repeats_until_the_turn_ends():
    api = RecordingApi()
    async with asyncio.timeout(5), asyncio.TaskGroup() as tasks:
        typing = TypingIndicators(api, tasks, interval_s=0.01, cap_s=30, delay_s=0)
        typing.start("t1", TYPING)
        typing.start("t1", TYPING)  # a redelivered ShowTyping does not start a second loop
        await eventually(lambda: len(api.actions) >= 3)
        assert typing.turns == {"t1"}
        typing.end("t1")
    # leaving the TaskGroup waited for the loop: without `end` it would type for 30 s
    assert set(api.actions) == {TYPING}
    assert typing.turns == frozenset()


async def test_end_all_stops_every_turn():
    api = RecordingApi()
    other = SendChatAction(chat_id=43, action="typing")
    async with asyncio.timeout(5), asyncio.TaskGroup() as tasks:
        typing = TypingIndicators(api, tasks, interval_s=0.01, cap_s=30, delay_s=0)
        typing.start("t1", TYPING)
        typing.start("t2", other)
        await eventually(lambda: {a.chat_id for a in api.actions} == {42, 43})
        typing.end_all()
    assert typing.turns == frozenset()


async def test_typing_gives_up_after_the_cap():
    api = RecordingApi()
    async with asyncio.timeout(5), asyncio.TaskGroup() as tasks:
        TypingIndicators(api, tasks, interval_s=0.01, cap_s=0.1, delay_s=0).start("t1", TYPING)
    assert len(api.actions) >= 2


async def test_a_transient_failure_is_retried_and_a_refusal_stops_the_turn():
    api = RecordingApi(TransientError("502"), RejectedError("gone", status=403, description="x"))
    async with asyncio.timeout(5), asyncio.TaskGroup() as tasks:
        TypingIndicators(api, tasks, interval_s=0.01, cap_s=30, delay_s=0).start("t1", TYPING)
    assert len(api.actions) == 2  # the 502, then the refusal that ended the loop


async def test_an_ended_turn_may_type_again():
    api = RecordingApi()
    async with asyncio.timeout(5), asyncio.TaskGroup() as tasks:
        typing = TypingIndicators(api, tasks, interval_s=0.01, cap_s=30, delay_s=0)
        typing.start("t1", TYPING)
        await eventually(lambda: api.actions)
        typing.end("t1")
        await eventually(lambda: not typing.turns)
        sent_before = len(api.actions)
        typing.start("t1", TYPING)
        await eventually(lambda: len(api.actions) > sent_before)
        typing.end("t1")


async def test_a_turn_answered_within_the_delay_shows_no_typing():
    api = RecordingApi()
    async with asyncio.timeout(5), asyncio.TaskGroup() as tasks:
        typing = TypingIndicators(api, tasks, interval_s=0.01, cap_s=30, delay_s=30)
        typing.start("t1", TYPING)
        typing.end("t1")  # the answer came first
    assert api.actions == []
