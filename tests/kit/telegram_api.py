"""A Telegram Bot API server speaking the wire as aiogram 3 and delivery's httpx client call it.

`POST /bot<token>/<method>` for getMe, deleteWebhook, setMyCommands, getUpdates (long poll with
offsets), sendMessage, editMessageText, sendChatAction, setMessageReaction and the multipart
uploads sendPhoto, sendDocument, sendAudio, sendVoice, sendVideo and sendAnimation, with Telegram's
checks and envelopes (`{"ok": false, "error_code": N, "description": ...}`); a wrong token is 401,
any other method 404. Tests act as a user (`user_says`, `user_sends`, `replay`, `message_id`),
inject faults (`fail_next`, `delay`) and read what the bot did: `sent` (sends and edits),
`next_sent()`, `transcript()`, `files` and `next_file()` (uploads with their bytes), `actions()`,
`reactions()`, `calls` (every request with its decoded parameters) and `confirmed_offset`.
"""

import asyncio
import contextlib
import itertools
import socket
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Final

import msgspec
from aiohttp import web

from tests.kit.telegram_wire import (
    CONFLICT,
    DESCRIPTIONS,
    JSON,
    JSON_TYPE,
    MAX_UPLOAD_BYTES,
    NOT_MODIFIED,
    UPLOAD_FIELDS,
    BotApiError,
    Call,
    EditMessageText,
    Entity,
    Fault,
    GetUpdates,
    SendChatAction,
    SendMessage,
    SendUpload,
    SentFile,
    SentMessage,
    SetMessageReaction,
    bot_user,
    chat_object,
    checked,
    checked_reactions,
    default_chat,
    media_fields,
    now_s,
    read_params,
    read_upload,
    refused,
    sent_file,
    typed,
)

__all__ = ["Call", "Entity", "SentFile", "SentMessage", "TelegramAPIServer", "telegram_api"]
DEFAULT_TOKEN: Final = "123456789:AAE-stellaclaw-test-token"


class TelegramAPIServer:
    """One bot's Bot API on 127.0.0.1 and a free port; `base_url` goes into `telegram.api_base`."""

    def __init__(self, token: str = DEFAULT_TOKEN) -> None:
        self.token = token
        self.bot_id = int(token.split(":", 1)[0])
        self.bot_username = "stellaclaw_test_bot"
        self.base_url = ""
        self.sent: list[SentMessage] = []
        self.files: list[SentFile] = []  # accepted uploads, in order
        self.calls: list[Call] = []
        self.confirmed_offset: int | None = None
        self._pending: list[tuple[int, dict[str, object]]] = []
        self._queued: dict[int, dict[str, object]] = {}
        self._update_ids = itertools.count(1000)
        self._message_ids = itertools.count(1)
        self._chats: dict[int, dict[str, object]] = {}
        self._latest: dict[tuple[int, int], SentMessage] = {}
        self._untaken: list[int] = []  # indices into `sent` that next_sent has not returned
        self._files_taken = 0  # `files` that next_file has returned
        self._actions: list[tuple[int, str]] = []
        self._reactions: list[tuple[int, int, str]] = []  # chat, message, emoji
        self._sent_changed = asyncio.Event()
        self._wake = asyncio.Event()
        self._polls = 0
        self._closing = False
        self._faults: defaultdict[str, list[Fault]] = defaultdict(list)
        self._delays: dict[str, float] = {}
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application(client_max_size=MAX_UPLOAD_BYTES + (1 << 20))  # the file and fields
        app.router.add_route("*", "/{bot}/{method}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        await web.SockSite(self._runner, sock).start()
        self.base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"

    async def stop(self) -> None:
        self._closing = True
        self._wake.set()  # long polls return at once instead of holding the shutdown
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # What a user does.

    def user_says(  # noqa: PLR0913 -- named like the Bot API fields they fill in
        self,
        chat_id: int,
        text: str,
        *,
        user_id: int | None = None,
        first_name: str = "Ada",
        chat_type: str = "private",
        message_thread_id: int | None = None,
    ) -> int:
        """Queue a text message from a user; returns its update_id."""
        return self.user_sends(
            chat_id,
            {"text": text},
            user_id=user_id,
            first_name=first_name,
            chat_type=chat_type,
            message_thread_id=message_thread_id,
        )

    def user_sends(  # noqa: PLR0913 -- named like the Bot API fields they fill in
        self,
        chat_id: int,
        content: dict[str, object],
        *,
        user_id: int | None = None,
        first_name: str = "Ada",
        chat_type: str = "private",
        message_thread_id: int | None = None,
    ) -> int:
        """Queue a message whose content fields (`text`, `caption`, `sticker`, ...) are given."""
        if user_id is None and chat_type != "private":
            raise ValueError(f"a message in a {chat_type} chat needs user_id")
        sender_id = chat_id if user_id is None else user_id
        sender = {"id": sender_id, "is_bot": False, "first_name": first_name}
        is_forum = message_thread_id is not None
        chat = self._chats[chat_id] = chat_object(chat_id, chat_type, first_name, is_forum=is_forum)
        message: dict[str, object] = {
            "message_id": next(self._message_ids),
            "from": sender,
            "chat": chat,
            "date": int(datetime.now(UTC).timestamp()),
            **content,
        }
        if message_thread_id is not None:
            message |= {"message_thread_id": message_thread_id, "is_topic_message": True}
        return self.queue_update({"message": message})

    def queue_update(self, fields: dict[str, object]) -> int:
        """Queue a raw update (`{"message": {...}}`, `{"callback_query": {...}}`); its id."""
        update_id = next(self._update_ids)
        self._queued[update_id] = {"update_id": update_id, **fields}
        self.replay(update_id)
        return update_id

    def message_id(self, update_id: int) -> int:
        """The message_id of the user's message queued as `update_id`."""
        message = self._queued[update_id]["message"]
        assert isinstance(message, dict)
        message_id = message["message_id"]
        assert isinstance(message_id, int)
        return message_id

    def replay(self, update_id: int) -> None:
        """Offer a queued update again, as if Telegram had lost its confirmation."""
        if all(pending_id != update_id for pending_id, _ in self._pending):
            self._pending.append((update_id, self._queued[update_id]))
        self._pending.sort(key=lambda pair: pair[0])
        self._wake.set()

    # Faults.

    def fail_next(
        self,
        method: str,
        *,
        status: int = 429,
        retry_after: int | None = None,
        description: str | None = None,
        times: int = 1,
    ) -> None:
        """Answer the next `times` calls of `method` with an error instead of running them."""
        if status == HTTPStatus.TOO_MANY_REQUESTS and retry_after is None:
            retry_after = 1
        if description is None and retry_after is not None:
            description = f"Too Many Requests: retry after {retry_after}"
        text = description or DESCRIPTIONS.get(status) or HTTPStatus(status).phrase
        fault = Fault(status=status, description=text, retry_after=retry_after)
        self._faults[method.lower()].extend([fault] * times)

    def delay(self, method: str, seconds: float) -> None:
        """Hold every later call of `method` for `seconds` before answering (0 ends it)."""
        self._delays[method.lower()] = seconds

    # What the bot did.

    def actions(self, chat_id: int) -> list[str]:
        """The chat actions (`typing`, ...) sent to a chat, in order."""
        return [action for chat, action in self._actions if chat == chat_id]

    def reactions(self, chat_id: int) -> list[tuple[int, str]]:
        """The reactions the bot set in a chat as `(message_id, emoji)`, in order; no removals."""
        return [(message, emoji) for chat, message, emoji in self._reactions if chat == chat_id]

    def transcript(self, chat_id: int) -> list[str]:
        """The bot's messages in a chat as the user sees them now (edits applied), oldest first."""
        mine = sorted((mid, sent) for (chat, mid), sent in self._latest.items() if chat == chat_id)
        return [sent.text for _, sent in mine]

    async def next_sent(self, chat_id: int | None = None, timeout_s: float = 5.0) -> SentMessage:
        """The oldest accepted send or edit (to `chat_id`, if given) not yet returned here."""

        def untaken() -> int | None:
            for index in self._untaken:  # only what next_sent has not returned: a short list
                if chat_id in (None, self.sent[index].chat_id):
                    return index
            return None

        try:
            async with asyncio.timeout(timeout_s):
                while (index := untaken()) is None:
                    await self._sent_changed.wait()
        except TimeoutError:
            where = "" if chat_id is None else f" to chat {chat_id}"
            raise AssertionError(f"nothing was sent{where} within {timeout_s} s") from None
        self._untaken.remove(index)
        return self.sent[index]

    async def next_file(self, timeout_s: float = 5.0) -> SentFile:
        """The oldest accepted upload not yet returned here."""
        try:
            async with asyncio.timeout(timeout_s):
                while len(self.files) <= self._files_taken:
                    await self._sent_changed.wait()
        except TimeoutError:
            raise AssertionError(f"no file was sent within {timeout_s} s") from None
        self._files_taken += 1
        return self.files[self._files_taken - 1]

    # The wire.

    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        try:
            params = await read_params(request)
            self.calls.append(Call(method=method, params=params, at_s=now_s()))
            if request.match_info["bot"] != f"bot{self.token}":
                raise BotApiError(401, "Unauthorized")
            if seconds := self._delays.get(method.lower()):
                await asyncio.sleep(seconds)
            if self._faults[method.lower()]:
                fault = self._faults[method.lower()].pop(0)
                raise BotApiError(fault.status, fault.description, fault.retry_after)
            if method.lower() in UPLOAD_FIELDS:
                result = await self._send_file(method, typed(params, SendUpload), request)
            else:
                result = await self._run(method.lower(), params)
        except BotApiError as refusal:
            return refused(refusal.fault)
        return web.Response(
            body=JSON.encode({"ok": True, "result": result}), content_type=JSON_TYPE
        )

    async def _run(self, method: str, params: dict[str, object]) -> object:
        match method:
            case "getme":
                return bot_user(self.bot_id, self.bot_username)
            case "deletewebhook" | "setmycommands":
                return True
            case "getupdates":
                return await self._get_updates(typed(params, GetUpdates))
            case "sendmessage":
                return self._send_message(typed(params, SendMessage))
            case "editmessagetext":
                return self._edit_message_text(typed(params, EditMessageText))
            case "sendchataction":
                action = typed(params, SendChatAction)
                self._actions.append((action.chat_id, action.action))
                return True
            case "setmessagereaction":
                return self._set_message_reaction(typed(params, SetMessageReaction))
            case _:
                raise BotApiError(404, "Not Found")

    async def _get_updates(self, params: GetUpdates) -> list[dict[str, object]]:
        if params.offset is not None and params.offset > 0:
            self._pending = [pair for pair in self._pending if pair[0] >= params.offset]
            self.confirmed_offset = max(self.confirmed_offset or 0, params.offset)
        self._polls += 1
        poll = self._polls
        self._wake.set()  # an earlier long poll ends with 409 Conflict, as on Telegram
        self._wake = wake = asyncio.Event()
        if not self._pending and params.timeout > 0 and not self._closing:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(params.timeout):
                    await wake.wait()
        if poll != self._polls:
            raise BotApiError(409, CONFLICT)
        limit = min(max(params.limit, 1), 100)
        return [update for _, update in self._pending[:limit]]

    def _send_message(self, params: SendMessage) -> dict[str, object]:
        entities = checked(params.text, params.entities)
        sent = SentMessage(
            method="sendMessage",
            chat_id=params.chat_id,
            message_id=next(self._message_ids),
            text=params.text,
            entities=entities,
            message_thread_id=params.message_thread_id,
            parse_mode=params.parse_mode,
        )
        self._accept(sent)
        return self._text_message(sent)

    async def _send_file(self, method: str, params: SendUpload, request: web.Request) -> object:
        upload = await read_upload(request, UPLOAD_FIELDS[method.lower()])
        sent = sent_file(method, params, upload, next(self._message_ids))
        self.files.append(sent)
        self._notify_sent()
        message = self._message(sent.chat_id, sent.message_id, sent.message_thread_id)
        return message | media_fields(sent)

    def _set_message_reaction(self, params: SetMessageReaction) -> bool:
        """The message is not looked up (a test reacts to any id it likes; a missing message
        is a `fail_next`)."""
        for reaction in checked_reactions(params):
            self._reactions.append((params.chat_id, params.message_id, reaction.emoji))
        return True

    def _edit_message_text(self, params: EditMessageText) -> dict[str, object]:
        entities = checked(params.text, params.entities)
        earlier = self._latest.get((params.chat_id, params.message_id))
        if earlier is None:
            raise BotApiError(400, "Bad Request: message to edit not found")
        if (earlier.text, earlier.entities) == (params.text, entities):
            raise BotApiError(400, NOT_MODIFIED)
        edited = msgspec.structs.replace(
            earlier,
            method="editMessageText",
            text=params.text,
            entities=entities,
            parse_mode=params.parse_mode,
        )
        self._accept(edited)
        return self._text_message(edited) | {"edit_date": int(datetime.now(UTC).timestamp())}

    def _accept(self, sent: SentMessage) -> None:
        self._untaken.append(len(self.sent))
        self.sent.append(sent)
        self._latest[(sent.chat_id, sent.message_id)] = sent
        self._notify_sent()

    def _notify_sent(self) -> None:
        self._sent_changed.set()  # wakes every waiting next_sent, next_file; later ones wait anew
        self._sent_changed = asyncio.Event()

    def _text_message(self, sent: SentMessage) -> dict[str, object]:
        message = self._message(sent.chat_id, sent.message_id, sent.message_thread_id)
        message["text"] = sent.text
        if sent.entities:
            message["entities"] = msgspec.to_builtins(sent.entities)
        return message

    def _message(self, chat_id: int, message_id: int, thread_id: int | None) -> dict[str, object]:
        """A Message from the bot, without its content."""
        message: dict[str, object] = {
            "message_id": message_id,
            "from": {"id": self.bot_id, "is_bot": True, "first_name": "Stellaclaw"},
            "chat": self._chats.get(chat_id) or default_chat(chat_id),
            "date": int(datetime.now(UTC).timestamp()),
        }
        if thread_id is not None:
            message |= {"message_thread_id": thread_id, "is_topic_message": True}
        return message


@contextlib.asynccontextmanager
async def telegram_api(token: str = DEFAULT_TOKEN) -> AsyncIterator[TelegramAPIServer]:
    """A started server for one test, stopped on exit."""
    server = TelegramAPIServer(token)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
