"""A Telegram Bot API server speaking the wire as aiogram 3 and delivery's httpx client call it.

`POST /bot<token>/<method>` for getMe, deleteWebhook, setMyCommands, getUpdates (long poll with
offsets), sendMessage (with an inline keyboard), editMessageText, deleteMessage, sendMessageDraft,
sendChatAction, setMessageReaction, answerCallbackQuery, getChatMemberCount, getFile, the uploads
sendPhoto, sendDocument, sendAudio, sendVoice, sendVideo, sendAnimation and sendMediaGroup;
`GET /file/bot<token>/<file_path>` downloads what getFile described. Telegram's checks and error
envelopes apply; a wrong token is 401, any other method 404. Tests act as users (`user_says`,
`user_sends`, `user_sends_file`, `user_presses`, `user_edits`, `bot_removed`, `replay`), set what
became of a chat (`block_chat`, `forget_chat`, `kick_bot`, `set_member_count`), turn on flood
limits (`enforce_limits`), inject faults (`fail_next`, in one chat or any; `delay`; `"download"`
is the file URL; `drafts_supported`) and read what the bot did: `sent`, `next_sent()`,
`transcript()`, `drafts()`, `files`, `next_file()`, `actions()`, `reactions()`,
`my_commands()`, `answer_to()`, `downloads()`, `too_many()`, `send_times()` and `calls`.
"""

import contextlib
import itertools
import socket
from collections.abc import AsyncIterator, Callable
from typing import Final, Unpack

from aiohttp import web

from tests.kit import telegram_users as users
from tests.kit import telegram_wire as wire
from tests.kit.telegram_files import (
    MAX_UPLOAD_BYTES,
    UPLOAD_FIELDS,
    FileHost,
    FileKind,
    SendMediaGroup,
    SendUpload,
    SentFile,
)
from tests.kit.telegram_limits import BLOCKED, CHAT_NOT_FOUND, ChatGate, FloodLimits, kicked
from tests.kit.telegram_outbox import Outbox, SentDraft
from tests.kit.telegram_wire import (
    GROUP_TITLE,
    BotApiError,
    Call,
    CallbackAnswer,
    Entity,
    SentMessage,
    chat_object,
    now_s,
    typed,
)

__all__ = ["Call", "Entity", "SentFile", "SentMessage", "TelegramAPIServer", "telegram_api"]
DEFAULT_TOKEN: Final = "123456789:AAE-stellaclaw-test-token"
_POLLS_OR_ALBUMS: Final = frozenset({"getupdates", "sendmediagroup"})  # answered asynchronously
PRIVATE_MEMBERS: Final = 2  # the user and the bot
GROUP_MEMBERS: Final = 5  # a group's getChatMemberCount unless a test sets it


class TelegramAPIServer:
    """One bot's Bot API on 127.0.0.1 and a free port; `base_url` goes into `telegram.api_base`."""

    def __init__(self, token: str = DEFAULT_TOKEN) -> None:
        self.token = token
        self.bot_id = int(token.split(":", 1)[0])
        self.bot_username = "stellaclaw_test_bot"
        self.bot_name = "Stellaclaw"  # its first_name, which `/start` greets with
        self.base_url = ""
        self.calls: list[Call] = []
        self.updates = users.UpdateQueue()
        self.hosted = FileHost()
        self._message_ids = itertools.count(1)
        self._chats: dict[int, dict[str, object]] = {}
        self.outbox = Outbox(self.bot_id, self._chats, self._message_ids)
        self.sent: list[SentMessage] = self.outbox.sent
        self.files: list[SentFile] = self.outbox.files
        self._messages: dict[tuple[int, int], dict[str, object]] = {}  # users', for replies
        self._member_counts: dict[int, int] = {}
        self._presses: dict[int, str] = {}  # update_id -> callback query id
        self.faults = wire.Faults()
        self.gate = ChatGate(now_s)
        self.drafts_supported = True  # False: sendMessageDraft is 404, as before Bot API 9.3
        self._runner: web.AppRunner | None = None
        self._methods = self._answered_at_once()

    async def start(self) -> None:
        app = web.Application(client_max_size=MAX_UPLOAD_BYTES + (1 << 20))  # the file and fields
        app.router.add_route("*", "/{bot}/{method}", self._handle)
        app.router.add_get("/file/{bot}/{file_path:.+}", self._download)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        await web.SockSite(self._runner, sock).start()
        self.base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"

    async def stop(self) -> None:
        self.updates.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # What a user does.

    def user_says(self, chat_id: int, text: str, **sender: Unpack[users.Sender]) -> int:
        """Queue a text message from a user (`sender` says who, and where); its update_id.
        `@name` and `/command` words get the entities Telegram gives them; a reply carries the
        replied message."""
        return self.user_sends(chat_id, {"text": text}, **sender)

    def user_sends(
        self, chat_id: int, content: dict[str, object], **sender: Unpack[users.Sender]
    ) -> int:
        """Queue a message whose content fields (`text`, `caption`, `sticker`, ...) are given."""
        chat, user = users.chat_and_sender(chat_id, sender)
        self._chats[chat_id] = chat
        message_id = next(self._message_ids)
        thread_id = sender.get("message_thread_id")
        message = users.user_message(chat, user, message_id, thread_id, content)
        if (replied := sender.get("reply_to_message_id")) is not None:
            message["reply_to_message"] = self._replied(chat_id, replied)
        self._messages[(chat_id, message_id)] = message
        return self.queue_update({"message": message})

    def user_sends_file(  # noqa: PLR0913 -- named like the Bot API fields they fill in
        self,
        chat_id: int,
        kind: FileKind,
        data: bytes,
        *,
        file_name: str | None = None,
        mime_type: str | None = None,
        caption: str | None = None,
        media_group_id: str | None = None,
        declared_size: int | None = None,
        **sender: Unpack[users.Sender],
    ) -> int:
        """Queue a message carrying a file of `kind`, kept for getFile and its download.

        A photo comes in sizes, the largest holding `data`; a sticker's `mime_type` picks its
        format (`application/x-tgsticker` animated, `video/webm` video, else WebP).
        `declared_size` is the `file_size` Telegram reports (getFile refuses one over 20 MB)
        without the kit holding that many bytes.
        """
        content = self.hosted.content(
            kind, data, file_name=file_name, mime_type=mime_type, declared_size=declared_size
        )
        if caption is not None:
            content["caption"] = caption
        if media_group_id is not None:
            content["media_group_id"] = media_group_id
        return self.user_sends(chat_id, content, **sender)

    def user_presses(
        self, chat_id: int, message_id: int, data: str, *, user_id: int | None = None
    ) -> int:
        """Queue a press of the bot's button with callback `data` under its message."""
        if user_id is None and chat_id < 0:
            raise ValueError("a press in a group needs user_id")
        query_id, message = self.outbox.open_query(chat_id, message_id, data)
        presser = users.user_object(chat_id if user_id is None else user_id, "Ada")
        query = users.callback_query(query_id, presser, chat_id, message, data)
        update_id = self.queue_update({"callback_query": query})
        self._presses[update_id] = query_id
        return update_id

    def user_edits(self, update_id: int, new_text: str) -> int:
        """Queue the edit of a user's message (queued as `update_id`): its text, or caption."""
        update = self.updates.get(update_id, "message")
        key = users.message_key(update)
        message = users.edited(self._messages.get(key, update), new_text)
        self._messages[key] = message
        return self.queue_update({"edited_message": message})

    def bot_removed(
        self,
        chat_id: int,
        *,
        status: str = "kicked",
        chat_type: str = "supergroup",
        title: str = GROUP_TITLE,
        user_id: int = 1,
    ) -> int:
        """Queue the bot's removal from a chat (`kicked`, or `left`) by `user_id`; in a private
        chat, `kicked` is the user blocking the bot."""
        is_private = chat_type == "private"
        chat = self._chats.get(chat_id) or chat_object(
            chat_id, chat_type, "Ada", is_forum=False, title=title
        )
        by = users.user_object(chat_id if is_private else user_id, "Ada")
        bot = users.bot_member(self.bot_id, self.bot_username)
        return self.queue_update({"my_chat_member": users.member_update(chat, by, bot, status)})

    def queue_update(self, fields: dict[str, object]) -> int:
        """Queue a raw update (`{"message": {...}}`, `{"callback_query": {...}}`); its id."""
        return self.updates.add(fields)

    def message_id(self, update_id: int) -> int:
        """The message_id of the user's message queued as `update_id`."""
        return users.message_key(self.updates.get(update_id, "message"))[1]

    def replay(self, update_id: int) -> None:
        """Offer a queued update again, as if Telegram had lost its confirmation."""
        self.updates.replay(update_id)

    def set_member_count(self, chat_id: int, count: int) -> None:
        """What getChatMemberCount answers for the chat (default: 2 private, 5 in a group)."""
        self._member_counts[chat_id] = count

    # What becomes of a chat.

    def block_chat(self, chat_id: int) -> None:
        """The user blocked the bot: every later call to the chat is 403."""
        self.gate.refusals[chat_id] = BLOCKED

    def forget_chat(self, chat_id: int) -> None:
        """Telegram does not know the chat: every later call to it is 400 `chat not found`."""
        self.gate.refusals[chat_id] = CHAT_NOT_FOUND

    def kick_bot(self, chat_id: int) -> None:
        """The group (a supergroup or channel too) removed the bot: every later call is 403."""
        self.gate.refusals[chat_id] = kicked(self.outbox.chat(chat_id))

    # Faults and limits.

    def fail_next(  # noqa: PLR0913 -- Telegram's error fields, and the chat they apply to
        self,
        method: str,
        *,
        status: int = 429,
        retry_after: int | None = None,
        description: str | None = None,
        times: int = 1,
        chat_id: int | None = None,
    ) -> None:
        """Answer the next `times` calls of `method` (to `chat_id`, if given) with an error
        instead of running them; a chat's own faults come before those for any chat."""
        fault = wire.refusal(status, retry_after, description)
        self.faults.fail_next(method, fault, times=times, chat_id=chat_id)

    def enforce_limits(
        self,
        *,
        per_private_chat_per_s: float = 1.0,
        private_burst: int = 3,
        per_group_per_min: int = 20,
        global_per_s: int = 30,
        clock: Callable[[], float] | None = None,
    ) -> None:
        """Answer sends and edits beyond Telegram's flood limits with 429 and the seconds to
        wait (`tests.kit.telegram_limits`); drafts and chat actions are not counted. `clock`
        (default: the loop's time; set it before the bot sends) also times `send_times`, drafts."""
        self.gate.limits = FloodLimits(
            per_private_chat_per_s=per_private_chat_per_s,
            private_burst=private_burst,
            per_group_per_min=per_group_per_min,
            global_per_s=global_per_s,
        )
        self.gate.clock = clock or self.gate.clock

    def delay(self, method: str, seconds: float) -> None:
        """Hold every later call of `method` for `seconds` before answering (0 ends it)."""
        self.faults.delay(method, seconds)

    # What the bot did.

    @property
    def confirmed_offset(self) -> int | None:
        """The highest offset the bot confirmed with getUpdates."""
        return self.updates.confirmed_offset

    def actions(self, chat_id: int) -> list[str]:
        """The chat actions (`typing`, ...) sent to a chat, in order."""
        return [action for chat, action in self.outbox.actions if chat == chat_id]

    def reactions(self, chat_id: int) -> list[tuple[int, str]]:
        """The reactions the bot set in a chat as `(message_id, emoji)`, in order; no removals."""
        return [
            (message, emoji) for chat, message, emoji in self.outbox.reactions if chat == chat_id
        ]

    def transcript(self, chat_id: int) -> list[str]:
        """The bot's messages in a chat as the user sees them now (edits applied, deleted ones
        gone), oldest first."""
        return self.outbox.transcript(chat_id)

    def drafts(self, chat_id: int) -> list[SentDraft]:
        """The drafts the bot streamed to a chat, in order."""
        return [draft for draft in self.outbox.drafts if draft.chat_id == chat_id]

    def too_many(self, chat_id: int | None = None) -> int:
        """How many 429s were answered (to `chat_id`, if given): flood limits and faults alike."""
        return sum(chat_id in (None, chat) for chat in self.gate.too_many)

    def send_times(self, chat_id: int) -> list[float]:
        """When each send, edit or upload to a chat was accepted, on the `enforce_limits` clock."""
        return list(self.gate.accepted[chat_id])

    async def next_sent(self, chat_id: int | None = None, timeout_s: float = 5.0) -> SentMessage:
        """The oldest accepted send or edit (to `chat_id`, if given) not yet returned here."""
        return await self.outbox.next_sent(chat_id, timeout_s)

    async def next_file(self, timeout_s: float = 5.0) -> SentFile:
        """The oldest accepted upload not yet returned here."""
        return await self.outbox.next_file(timeout_s)

    def my_commands(self, scope_type: str = "default") -> list[tuple[str, str]]:
        """The command menu last set for a scope type, as `(command, description)`."""
        return self.outbox.commands.get(scope_type, [])

    def answer_to(self, update_id: int) -> CallbackAnswer | None:
        """The bot's answerCallbackQuery to the press queued as `update_id`, if it answered."""
        return self.outbox.answer(self._presses[update_id])

    def downloads(self, update_id: int) -> int:
        """How many times the bot downloaded the files of the message queued as `update_id`."""
        return self.hosted.downloads_of(self.updates.get(update_id, "message"))

    # The wire.

    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params: dict[str, object] = {}
        try:
            params = await wire.read_params(request)
            self.calls.append(Call(method=method, params=params, at_s=now_s()))
            await self._admit(request.match_info["bot"], method, wire.chat_of(params))
            result = await self._run(method, params, request)
        except BotApiError as refusal:
            self.gate.refused(wire.chat_of(params), refusal.fault)
            return wire.refused(refusal.fault)
        self.gate.passed(method, wire.chat_of(params))
        return web.Response(
            body=wire.JSON.encode({"ok": True, "result": result}), content_type=wire.JSON_TYPE
        )

    async def _download(self, request: web.Request) -> web.Response:
        """`GET /file/bot<token>/<file_path>`: the file's bytes (`fail_next("download")`)."""
        file_path = request.match_info["file_path"]
        self.calls.append(Call(method="download", params={"file_path": file_path}, at_s=now_s()))
        try:
            await self._admit(request.match_info["bot"], "download", None)
            data = self.hosted.read(file_path)
            if data is None:
                raise BotApiError(404, "Not Found")
        except BotApiError as refusal:
            return wire.refused(refusal.fault)
        return web.Response(body=data, content_type="application/octet-stream")

    async def _admit(self, bot: str, method: str, chat_id: int | None) -> None:
        """The token, then any delay or fault a test set for the method (in the chat)."""
        if bot != f"bot{self.token}":
            raise BotApiError(401, "Unauthorized")
        await self.faults.admit(method, chat_id)

    async def _run(self, called: str, params: dict[str, object], request: web.Request) -> object:
        """The method, once the chat's state and flood control let the call through."""
        method = called.lower()
        known = method in self._methods or method in UPLOAD_FIELDS or method in _POLLS_OR_ALBUMS
        if not known or (method == "sendmessagedraft" and not self.drafts_supported):
            raise BotApiError(404, "Not Found")
        self.gate.admit(method, wire.chat_of(params))
        if method == "getupdates":
            return await self.updates.poll(typed(params, wire.GetUpdates))
        if method == "sendmediagroup":
            return await self.outbox.send_media_group(typed(params, SendMediaGroup), request)
        if method in UPLOAD_FIELDS:
            return await self.outbox.send_file(called, typed(params, SendUpload), request)
        return self._methods[method](params)

    def _answered_at_once(self) -> dict[str, Callable[[dict[str, object]], object]]:
        """Every method but getUpdates and the uploads, by its lower-cased name."""
        return self.outbox.methods(lambda: self.gate.clock()) | {
            "getme": lambda _: wire.bot_user(self.bot_id, self.bot_username, self.bot_name),
            "deletewebhook": lambda _: True,
            "getchatmembercount": lambda p: self._member_count(typed(p, wire.GetChatMemberCount)),
            "getfile": lambda p: self.hosted.get_file(typed(p, wire.GetFile).file_id),
        }

    def _member_count(self, params: wire.GetChatMemberCount) -> int:
        is_private = self.outbox.chat(params.chat_id)["type"] == "private"
        default = PRIVATE_MEMBERS if is_private else GROUP_MEMBERS
        return self._member_counts.get(params.chat_id, default)

    def _replied(self, chat_id: int, message_id: int) -> dict[str, object]:
        """The message a reply quotes: a user's, or the bot's as it reads now."""
        found = self._messages.get((chat_id, message_id))
        found = found or self.outbox.message_object(chat_id, message_id)
        if found is None:
            raise ValueError(f"no message {message_id} in chat {chat_id} to reply to")
        return users.quoted(found)


@contextlib.asynccontextmanager
async def telegram_api(token: str = DEFAULT_TOKEN) -> AsyncIterator[TelegramAPIServer]:
    """A started server for one test, stopped on exit."""
    server = TelegramAPIServer(token)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
