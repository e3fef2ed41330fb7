"""The test kit's Bot API server, driven by plain HTTP and by aiogram's own client."""

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from aiogram.exceptions import TelegramBadRequest, TelegramRetryAfter, TelegramServerError
from aiogram.types import MessageEntity

from tests.kit.telegram_api import Entity, telegram_api
from tests.kit.telegram_wire import NOT_MODIFIED
from tests.kit.waiting import eventually


@pytest.fixture
async def http(telegram) -> AsyncIterator[httpx.AsyncClient]:
    base = f"{telegram.base_url}/bot{telegram.token}/"
    async with httpx.AsyncClient(base_url=base, timeout=httpx.Timeout(10.0)) as client:
        yield client


async def test_get_me_answers_in_telegrams_envelope(http, telegram):
    answer = (await http.post("getMe")).json()
    assert answer["ok"] is True
    assert answer["result"]["id"] == telegram.bot_id
    assert answer["result"]["username"] == telegram.bot_username


async def test_a_wrong_token_and_an_unknown_method_are_refused_as_telegram_does(http, telegram):
    wrong = await http.post(f"{telegram.base_url}/bot1:nope/getMe")
    unknown = await http.post("sendTelepathy")
    assert wrong.status_code == 401
    assert wrong.json() == {"ok": False, "error_code": 401, "description": "Unauthorized"}
    assert unknown.status_code == 404
    assert unknown.json() == {"ok": False, "error_code": 404, "description": "Not Found"}


async def test_a_long_poll_wakes_when_the_user_speaks(http, telegram):
    poll = asyncio.create_task(http.post("getUpdates", json={"timeout": 50}))
    await eventually(lambda: any(c.method == "getUpdates" for c in telegram.calls))
    update_id = telegram.user_says(7, "hello")
    updates = (await poll).json()["result"]
    assert [u["update_id"] for u in updates] == [update_id]
    message = updates[0]["message"]
    assert message["text"] == "hello"
    assert message["chat"] == {"id": 7, "type": "private", "first_name": "Ada"}
    assert message["from"]["id"] == 7


async def test_an_offset_confirms_and_drops_earlier_updates_for_good(http, telegram):
    first, second, third = (telegram.user_says(7, text) for text in ("a", "b", "c"))
    limited = (await http.post("getUpdates", params={"limit": "2"})).json()["result"]
    confirmed = (await http.post("getUpdates", data={"offset": str(second + 1)})).json()
    again = (await http.post("getUpdates", json={"offset": first})).json()["result"]
    assert [u["update_id"] for u in limited] == [first, second]
    assert [u["update_id"] for u in confirmed["result"]] == [third]
    assert [u["update_id"] for u in again] == [third]
    assert telegram.confirmed_offset == second + 1


async def test_a_replayed_update_is_offered_again(http, telegram):
    update_id = telegram.user_says(7, "again")
    await http.post("getUpdates", json={"offset": update_id + 1})
    telegram.replay(update_id)
    updates = (await http.post("getUpdates")).json()["result"]
    assert [u["update_id"] for u in updates] == [update_id]


async def test_a_second_poller_ends_the_first_with_a_conflict(http, telegram):
    first = asyncio.create_task(http.post("getUpdates", json={"timeout": 50}))
    await eventually(lambda: any(c.method == "getUpdates" for c in telegram.calls))
    second = asyncio.create_task(http.post("getUpdates", json={"timeout": 50}))
    refused = await first
    telegram.user_says(7, "wake the second")
    assert refused.status_code == 409
    assert refused.json()["description"].startswith("Conflict: terminated by other getUpdates")
    assert len((await second).json()["result"]) == 1


async def test_stop_ends_a_pending_long_poll_promptly(http):
    async with telegram_api() as server:
        url = f"{server.base_url}/bot{server.token}/getUpdates"
        poll = asyncio.create_task(http.post(url, json={"timeout": 50}))
        await eventually(lambda: server.calls)
        async with asyncio.timeout(5):
            await server.stop()
            answer = await poll
    assert answer.json() == {"ok": True, "result": []}


async def test_send_message_records_the_message_and_returns_it(http, telegram):
    entities = [{"type": "bold", "offset": 0, "length": 2}]
    body = {"chat_id": 7, "text": "hi there", "entities": entities, "message_thread_id": 3}
    answer = (await http.post("sendMessage", json=body)).json()["result"]
    sent = await telegram.next_sent(7)
    assert answer["message_id"] == sent.message_id
    assert answer["text"] == "hi there"
    assert answer["entities"] == entities
    assert answer["message_thread_id"] == 3
    assert sent.entities == (Entity(type="bold", offset=0, length=2),)
    assert telegram.transcript(7) == ["hi there"]


async def test_texts_are_measured_in_utf16_code_units(http, telegram):
    fits = await http.post("sendMessage", json={"chat_id": 7, "text": "😀" * 2048})
    too_long = await http.post("sendMessage", json={"chat_id": 7, "text": "😀" * 2049})
    empty = await http.post("sendMessage", json={"chat_id": 7, "text": "  "})
    outside = await http.post(
        "sendMessage",
        json={"chat_id": 7, "text": "😀", "entities": [{"type": "bold", "offset": 1, "length": 2}]},
    )
    assert fits.json()["ok"] is True
    assert too_long.json()["description"] == "Bad Request: message is too long"
    assert empty.json()["description"] == "Bad Request: message text is empty"
    assert outside.status_code == 400
    assert outside.json()["description"].startswith("Bad Request: can't parse entities: ")
    assert len(telegram.sent) == 1


async def test_edits_are_checked_like_telegram_checks_them(http, telegram):
    sent = (await http.post("sendMessage", json={"chat_id": 7, "text": "v1"})).json()["result"]
    edit = {"chat_id": 7, "message_id": sent["message_id"]}
    same = await http.post("editMessageText", json=edit | {"text": "v1"})
    changed = await http.post("editMessageText", json=edit | {"text": "v2"})
    missing = await http.post("editMessageText", json=edit | {"message_id": 999, "text": "v3"})
    assert same.json()["description"] == NOT_MODIFIED
    assert changed.json()["result"]["text"] == "v2"
    assert missing.json()["description"] == "Bad Request: message to edit not found"
    assert telegram.transcript(7) == ["v2"]
    assert [s.method for s in telegram.sent] == ["sendMessage", "editMessageText"]


async def test_chat_actions_are_recorded_per_chat(http, telegram):
    await http.post("sendChatAction", json={"chat_id": 7, "action": "typing"})
    await http.post("sendChatAction", data={"chat_id": "8", "action": "upload_document"})
    assert telegram.actions(7) == ["typing"]
    assert telegram.actions(8) == ["upload_document"]


async def test_next_sent_fails_when_nothing_is_sent(telegram):
    with pytest.raises(AssertionError, match="nothing was sent to chat 7"):
        await telegram.next_sent(7, timeout_s=0.05)


async def test_aiogram_reads_updates_and_sends_through_it(bot, telegram):
    telegram.user_says(-100, "in a topic", user_id=5, chat_type="supergroup", message_thread_id=9)
    updates = await bot.get_updates(timeout=1)
    bold = MessageEntity(type="bold", offset=0, length=4)
    message = await bot.send_message(-100, "done here", entities=[bold], message_thread_id=9)
    sent = await telegram.next_sent()
    call = telegram.calls[-1]
    assert updates[0].message is not None
    assert updates[0].message.is_topic_message is True
    assert updates[0].message.from_user is not None
    assert updates[0].message.from_user.id == 5
    assert message.message_id == sent.message_id
    assert sent.entities == (Entity(type="bold", offset=0, length=4),)
    assert sent.message_thread_id == 9
    assert call.params["chat_id"] == -100  # aiogram sent "-100" in a form; decoded as Telegram does


async def test_aiogram_raises_telegrams_errors(bot, telegram):
    telegram.fail_next("sendMessage", retry_after=3)
    telegram.fail_next("getMe", status=502)
    with pytest.raises(TelegramRetryAfter) as limited:
        await bot.send_message(7, "hi")
    with pytest.raises(TelegramServerError, match="Bad Gateway"):
        await bot.get_me()
    with pytest.raises(TelegramBadRequest, match="message is too long"):
        await bot.send_message(7, "x" * 4097)
    assert limited.value.retry_after == 3
    assert "Too Many Requests: retry after 3" in str(limited.value)
    assert (await bot.send_message(7, "hi")).text == "hi"  # the fault was for one call only


async def test_a_delay_holds_the_answer(http, telegram):
    telegram.delay("sendChatAction", 0.2)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await http.post("sendChatAction", json={"chat_id": 7, "action": "typing"})
    assert loop.time() - started >= 0.2
