"""The kit's Bot API server refuses by chat: blocked, unknown, bot kicked, faults, flood limits."""

from collections.abc import AsyncIterator

import httpx
import msgspec
import pytest
from aiogram.exceptions import TelegramForbiddenError, TelegramRetryAfter

ADA = 42
BOB = 43
GROUP = -100777


class Clock:
    """The time flood control reads, moved by the test instead of waited for."""

    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s


@pytest.fixture
async def http(telegram) -> AsyncIterator[httpx.AsyncClient]:
    base = f"{telegram.base_url}/bot{telegram.token}/"
    async with httpx.AsyncClient(base_url=base, timeout=httpx.Timeout(10.0)) as client:
        yield client


@pytest.fixture
def clock(telegram) -> Clock:
    clock = Clock()
    telegram.enforce_limits(clock=clock)
    return clock


async def say(http: httpx.AsyncClient, chat_id: int, text: str = "hi") -> httpx.Response:
    return await http.post("sendMessage", json={"chat_id": chat_id, "text": text})


async def test_a_chat_that_blocked_the_bot_refuses_every_call_to_it(http, telegram):
    telegram.block_chat(ADA)
    answers = [
        await say(http, ADA),
        await http.post("sendChatAction", json={"chat_id": ADA, "action": "typing"}),
        await http.post("sendMessageDraft", json={"chat_id": ADA, "draft_id": 1, "text": "x"}),
    ]
    blocked = {
        "ok": False,
        "error_code": 403,
        "description": "Forbidden: bot was blocked by the user",
    }
    assert [answer.json() for answer in answers] == [blocked] * 3
    assert (await say(http, BOB)).json()["ok"] is True
    assert telegram.transcript(BOB) == ["hi"]
    assert telegram.actions(ADA) == []


async def test_an_unknown_chat_is_not_found(http, telegram):
    telegram.forget_chat(ADA)
    answer = await say(http, ADA)
    assert answer.status_code == 400
    assert answer.json()["description"] == "Bad Request: chat not found"


async def test_a_group_that_kicked_the_bot_says_which_kind_of_group_it_is(http, telegram):
    telegram.user_says(-5, "hi", user_id=ADA, chat_type="group")
    telegram.user_says(GROUP, "hi", user_id=ADA, chat_type="supergroup")
    telegram.kick_bot(-5)
    telegram.kick_bot(GROUP)
    group, supergroup = await say(http, -5), await say(http, GROUP)
    assert (group.status_code, supergroup.status_code) == (403, 403)
    assert group.json()["description"] == "Forbidden: bot was kicked from the group chat"
    assert supergroup.json()["description"] == (
        "Forbidden: bot was kicked from the supergroup chat"
    )
    with pytest.raises(ValueError, match="block_chat"):
        telegram.kick_bot(ADA)


async def test_aiogram_raises_forbidden_for_a_blocked_chat(bot, telegram):
    telegram.block_chat(ADA)
    with pytest.raises(TelegramForbiddenError, match="bot was blocked by the user"):
        await bot.send_message(ADA, "hi")


async def test_a_fault_for_one_chat_lets_the_others_through(http, telegram):
    telegram.fail_next("sendMessage", retry_after=65, chat_id=ADA)
    telegram.fail_next("sendMessage", status=502)
    limited = await say(http, ADA)
    other = await say(http, BOB)
    after = await say(http, ADA)
    assert limited.json() == {
        "ok": False,
        "error_code": 429,
        "description": "Too Many Requests: retry after 65",
        "parameters": {"retry_after": 65},
    }
    assert other.status_code == 502  # the fault for any chat, taken by the next call to any
    assert after.json()["ok"] is True
    assert telegram.too_many(ADA) == 1
    assert telegram.too_many(BOB) == 0


async def test_limits_are_off_unless_enforced(http, telegram):
    answers = [await say(http, ADA, f"m{n}") for n in range(10)]
    assert all(answer.json()["ok"] for answer in answers)
    assert telegram.too_many() == 0
    assert len(telegram.send_times(ADA)) == 10


async def test_a_private_chat_takes_a_burst_then_one_message_a_second(http, telegram, clock):
    burst = [await say(http, ADA, f"m{n}") for n in range(3)]
    refused = await say(http, ADA, "m3")
    other = await say(http, BOB)
    clock.now_s += 0.5
    still = await say(http, ADA, "m3")
    clock.now_s += 0.5
    paced = await say(http, ADA, "m3")
    assert all(answer.json()["ok"] for answer in [*burst, other, paced])
    assert refused.status_code == 429
    assert refused.json() == {
        "ok": False,
        "error_code": 429,
        "description": "Too Many Requests: retry after 1",
        "parameters": {"retry_after": 1},
    }
    assert still.json()["parameters"] == {"retry_after": 1}  # rounded up, never 0
    assert telegram.too_many(ADA) == 2
    assert telegram.too_many() == 2
    assert telegram.send_times(ADA) == [1000.0, 1000.0, 1000.0, 1001.0]
    assert telegram.transcript(ADA) == ["m0", "m1", "m2", "m3"]


async def test_a_slower_pace_waits_longer(http, telegram):
    clock = Clock()
    telegram.enforce_limits(per_private_chat_per_s=0.2, private_burst=1, clock=clock)
    await say(http, ADA)
    refused = await say(http, ADA)
    clock.now_s += 2.5
    later = await say(http, ADA)
    assert refused.json()["parameters"] == {"retry_after": 5}
    assert later.json()["parameters"] == {"retry_after": 3}


async def test_edits_count_and_chat_actions_and_drafts_do_not(http, telegram, clock):
    sent = (await say(http, ADA, "v0")).json()["result"]
    edit = {"chat_id": ADA, "message_id": sent["message_id"]}
    for n in range(1, 3):
        assert (await http.post("editMessageText", json=edit | {"text": f"v{n}"})).json()["ok"]
    for _ in range(5):
        action = {"chat_id": ADA, "action": "typing"}
        assert (await http.post("sendChatAction", json=action)).json()["ok"]
        draft = {"chat_id": ADA, "draft_id": 3, "text": "partial"}
        assert (await http.post("sendMessageDraft", json=draft)).json()["ok"]
    refused = await http.post("editMessageText", json=edit | {"text": "v3"})
    assert refused.status_code == 429
    assert telegram.transcript(ADA) == ["v2"]
    assert [d.at_s for d in telegram.drafts(ADA)] == [1000.0] * 5


async def test_a_group_takes_twenty_messages_a_minute(http, telegram, clock):
    for n in range(20):
        clock.now_s += 1.0
        assert (await say(http, GROUP, f"m{n}")).json()["ok"]
    refused = await say(http, GROUP, "m20")
    clock.now_s += 40.5
    still = await say(http, GROUP, "m20")
    clock.now_s += 0.5
    allowed = await say(http, GROUP, "m20")
    assert refused.json()["parameters"] == {"retry_after": 41}  # the first leaves at 1061
    assert still.json()["parameters"] == {"retry_after": 1}
    assert allowed.json()["ok"] is True
    assert telegram.too_many(GROUP) == 2


async def test_the_bot_sends_thirty_messages_a_second_in_all(http, telegram, clock):
    for chat_id in range(1, 31):
        assert (await say(http, chat_id)).json()["ok"]
    refused = await say(http, 31)
    clock.now_s += 1.0
    allowed = await say(http, 31)
    assert refused.json()["parameters"] == {"retry_after": 1}
    assert allowed.json()["ok"] is True
    assert telegram.too_many(31) == 1


async def test_uploads_count_and_an_album_counts_once(http, telegram, clock):
    telegram.enforce_limits(private_burst=2, clock=clock)
    files = {"a": ("a.txt", b"a", "text/plain"), "b": ("b.txt", b"b", "text/plain")}
    items = [{"type": "document", "media": f"attach://{part}"} for part in files]
    form = {"chat_id": str(ADA), "media": msgspec.json.encode(items).decode()}
    album = await http.post("sendMediaGroup", data=form, files=files)
    document = {"document": ("c.txt", b"c", "text/plain")}
    upload = await http.post("sendDocument", data={"chat_id": str(ADA)}, files=document)
    refused = await http.post("sendDocument", data={"chat_id": str(ADA)}, files=document)
    assert album.json()["ok"] is True
    assert upload.json()["ok"] is True
    assert refused.status_code == 429
    assert [f.file_name for f in telegram.files] == ["a.txt", "b.txt", "c.txt"]
    assert telegram.send_times(ADA) == [1000.0, 1000.0]


async def test_aiogram_reads_the_flood_wait(bot, telegram, clock):
    telegram.enforce_limits(private_burst=1, clock=clock)
    await bot.send_message(ADA, "one")
    with pytest.raises(TelegramRetryAfter) as limited:
        await bot.send_message(ADA, "two")
    assert limited.value.retry_after == 1
