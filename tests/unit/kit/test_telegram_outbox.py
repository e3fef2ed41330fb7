"""The kit's Bot API server: drafts, deletions, albums and edits, as Telegram answers them."""

from collections.abc import AsyncIterator

import httpx
import msgspec
import pytest
from aiogram.exceptions import TelegramBadRequest
from aiogram.types import BufferedInputFile, InputMediaDocument, InputMediaPhoto, MessageEntity

from tests.kit.attachments import png
from tests.kit.telegram_api import Entity
from tests.kit.telegram_wire import NOT_MODIFIED

ADA = 42
GROUP = -100777


@pytest.fixture
async def http(telegram) -> AsyncIterator[httpx.AsyncClient]:
    base = f"{telegram.base_url}/bot{telegram.token}/"
    async with httpx.AsyncClient(base_url=base, timeout=httpx.Timeout(10.0)) as client:
        yield client


def album(*items: dict[str, object]) -> dict[str, str]:
    """The form fields of a sendMediaGroup to Ada: the items as the JSON string Telegram reads."""
    return {"chat_id": str(ADA), "media": msgspec.json.encode(list(items)).decode()}


def photo(part: str, **fields: object) -> dict[str, object]:
    return {"type": "photo", "media": f"attach://{part}", **fields}


async def test_drafts_are_recorded_in_order_and_never_become_messages(http, telegram):
    bold = [{"type": "bold", "offset": 0, "length": 5}]
    first = {"chat_id": ADA, "draft_id": 7, "text": "Hello"}
    answers = [
        await http.post("sendMessageDraft", json=first),
        await http.post("sendMessageDraft", json=first | {"text": "Hello, Ada", "entities": bold}),
        await http.post("sendMessageDraft", json=first | {"text": ""}),  # "Thinking…"
    ]
    assert [answer.json() for answer in answers] == [{"ok": True, "result": True}] * 3
    drafts = telegram.drafts(ADA)
    assert [(d.draft_id, d.text) for d in drafts] == [(7, "Hello"), (7, "Hello, Ada"), (7, "")]
    assert drafts[1].entities == (Entity(type="bold", offset=0, length=5),)
    assert drafts[0].at_s <= drafts[1].at_s <= drafts[2].at_s
    assert telegram.transcript(ADA) == []
    assert telegram.sent == []


async def test_aiogram_streams_a_draft_through_it(bot, telegram):
    assert await bot.send_message_draft(ADA, 99, text="partial answer") is True
    [draft] = telegram.drafts(ADA)
    assert (draft.draft_id, draft.text) == (99, "partial answer")


async def test_drafts_are_refused_outside_private_chats_and_without_an_id(http, telegram):
    telegram.user_says(GROUP, "hi", user_id=ADA, chat_type="supergroup")
    in_group = await http.post("sendMessageDraft", json={"chat_id": GROUP, "draft_id": 1})
    zero = await http.post("sendMessageDraft", json={"chat_id": ADA, "draft_id": 0, "text": "x"})
    too_long = await http.post(
        "sendMessageDraft", json={"chat_id": ADA, "draft_id": 1, "text": "x" * 4097}
    )
    assert in_group.json() == {
        "ok": False,
        "error_code": 400,
        "description": "Bad Request: TEXTDRAFT_PEER_INVALID",
    }
    assert zero.json()["description"] == "Bad Request: RANDOM_ID_INVALID"
    assert too_long.json()["description"] == "Bad Request: message is too long"
    assert telegram.drafts(GROUP) == telegram.drafts(ADA) == []


async def test_a_bot_api_without_drafts_answers_not_found(http, telegram):
    telegram.drafts_supported = False
    answer = await http.post("sendMessageDraft", json={"chat_id": ADA, "draft_id": 1, "text": "x"})
    assert answer.status_code == 404
    assert answer.json() == {"ok": False, "error_code": 404, "description": "Not Found"}
    assert telegram.drafts(ADA) == []


async def test_a_deleted_message_leaves_the_transcript_and_cannot_be_edited(http, telegram):
    sent = [
        (await http.post("sendMessage", json={"chat_id": ADA, "text": text})).json()["result"]
        for text in ("panel", "answer")
    ]
    panel = {"chat_id": ADA, "message_id": sent[0]["message_id"]}
    deleted = await http.post("deleteMessage", json=panel)
    again = await http.post("deleteMessage", json=panel)
    unknown = await http.post("deleteMessage", json=panel | {"message_id": 999})
    edit = await http.post("editMessageText", json=panel | {"text": "✅ Done"})
    assert deleted.json() == {"ok": True, "result": True}
    assert again.json()["description"] == "Bad Request: message to delete not found"
    assert unknown.status_code == 400
    assert unknown.json()["description"] == "Bad Request: message to delete not found"
    assert edit.json()["description"] == "Bad Request: message to edit not found"
    assert telegram.transcript(ADA) == ["answer"]
    assert telegram.outbox.deleted == [(ADA, sent[0]["message_id"])]


async def test_the_bot_can_delete_a_file_it_sent(http, telegram):
    files = {"document": ("notes.txt", b"notes", "text/plain")}
    sent = await http.post("sendDocument", data={"chat_id": str(ADA)}, files=files)
    message_id = sent.json()["result"]["message_id"]
    deleted = await http.post("deleteMessage", json={"chat_id": ADA, "message_id": message_id})
    assert deleted.json()["result"] is True


async def test_an_album_goes_as_one_call_of_attached_parts(http, telegram):
    files = {"one": ("one.png", png(40, 30), "image/png"), "two": ("two.png", png(8, 8))}
    bold = [{"type": "bold", "offset": 0, "length": 3}]
    form = album(photo("one", caption="Two charts", caption_entities=bold), photo("two"))
    answer = await http.post("sendMediaGroup", data=form | {"message_thread_id": "4"}, files=files)
    messages = answer.json()["result"]
    first, second = telegram.files
    assert len({m["media_group_id"] for m in messages}) == 1
    assert [m["message_id"] for m in messages] == [first.message_id, second.message_id]
    assert messages[0]["caption"] == "Two charts"
    assert messages[0]["caption_entities"] == bold
    assert messages[1]["photo"][0]["width"] == 8
    assert (first.method, first.kind, first.data) == ("sendMediaGroup", "photo", png(40, 30))
    assert (first.width, first.height, first.message_thread_id) == (40, 30, 4)
    assert first.media_group == second.media_group == messages[0]["media_group_id"]
    assert first.caption_entities == (Entity(type="bold", offset=0, length=3),)
    assert [c.method for c in telegram.calls] == ["sendMediaGroup"]
    assert await telegram.next_file() == first


async def test_aiogram_sends_an_album_through_it(bot, telegram):
    def doc(name: str) -> InputMediaDocument:
        return InputMediaDocument(media=BufferedInputFile(name.encode(), filename=name))

    caption = MessageEntity(type="italic", offset=0, length=4)
    first = InputMediaPhoto(
        media=BufferedInputFile(png(5, 5), "a.png"), caption="look", caption_entities=[caption]
    )
    photos = await bot.send_media_group(ADA, [first, first])
    documents = await bot.send_media_group(ADA, [doc("a.md"), doc("b.md")])
    assert [m.media_group_id is not None for m in photos + documents] == [True] * 4
    assert photos[0].media_group_id != documents[0].media_group_id
    assert photos[0].caption == "look"
    assert [f.file_name for f in telegram.files] == ["a.png", "a.png", "a.md", "b.md"]
    assert telegram.files[2].data == b"a.md"


async def test_a_lone_item_goes_as_a_plain_message_outside_any_album(http, telegram):
    answer = await http.post(
        "sendMediaGroup", data=album(photo("p")), files={"p": ("p.png", png(4, 4))}
    )
    [message] = answer.json()["result"]
    assert "media_group_id" not in message
    assert telegram.files[0].method == "sendMediaGroup"
    assert telegram.files[0].media_group is None


@pytest.mark.parametrize(
    ("items", "description"),
    [
        ([], "Bad Request: there are no messages to send"),
        ([photo("p")] * 11, "Bad Request: too many messages to send as an album"),
        (
            [photo("p"), {"type": "document", "media": "attach://p"}],
            "Bad Request: document can't be mixed with other media types",
        ),
        (
            [photo("p"), {"type": "animation", "media": "attach://p"}],
            "Bad Request: can't parse InputMedia: type \"animation\" can't be used in "
            "sendMediaGroup",
        ),
        (
            [photo("p"), {"type": "sticker", "media": "attach://p"}],
            'Bad Request: can\'t parse InputMedia: type "sticker" is unsupported',
        ),
        ([photo("p"), photo("missing")], "Bad Request: can't parse InputMedia: media not found"),
    ],
)
async def test_albums_are_checked_as_telegram_checks_them(http, telegram, items, description):
    files = {"p": ("p.png", png(4, 4), "image/png")}
    answer = await http.post("sendMediaGroup", data=album(*items), files=files)
    assert answer.status_code == 400
    assert answer.json() == {"ok": False, "error_code": 400, "description": description}
    assert telegram.files == []


async def test_an_album_without_media_is_refused(http, telegram):
    answer = await http.post("sendMediaGroup", json={"chat_id": ADA})
    assert answer.json()["description"] == 'Bad Request: parameter "media" is required'


async def test_an_edit_that_changes_nothing_is_refused_and_markup_counts_as_a_change(
    http, telegram
):
    bold = [{"type": "bold", "offset": 0, "length": 2}]
    keyboard = {"inline_keyboard": [[{"text": "Stop", "callback_data": "cancel"}]]}
    body = {"chat_id": ADA, "text": "v1 working", "entities": bold, "reply_markup": keyboard}
    sent = (await http.post("sendMessage", json=body)).json()["result"]
    edit = body | {"message_id": sent["message_id"]}
    same = await http.post("editMessageText", json=edit)
    del edit["reply_markup"]
    unbuttoned = await http.post("editMessageText", json=edit)
    same_again = await http.post("editMessageText", json=edit)
    unbolded = await http.post("editMessageText", json=edit | {"entities": []})
    missing = await http.post("editMessageText", json=edit | {"message_id": 999})
    assert (same.status_code, same.json()["description"]) == (400, NOT_MODIFIED)
    assert NOT_MODIFIED.startswith("Bad Request: message is not modified: specified new message")
    assert unbuttoned.json()["ok"] is True
    assert "reply_markup" not in unbuttoned.json()["result"]
    assert same_again.json()["description"] == NOT_MODIFIED
    assert unbolded.json()["ok"] is True
    assert missing.json()["description"] == "Bad Request: message to edit not found"


async def test_aiogram_reads_a_refused_draft_as_a_bad_request(bot, telegram):
    with pytest.raises(TelegramBadRequest, match="TEXTDRAFT_PEER_INVALID"):
        await bot.send_message_draft(GROUP, 1, text="not here")
