"""What the bot did on the test kit's Telegram server, and the methods by which it did it.

sendMessage (with an inline keyboard), editMessageText, the uploads, sendChatAction,
setMessageReaction, setMyCommands and answerCallbackQuery land here; tests read them back through
`TelegramAPIServer` (`sent`, `next_sent()`, `transcript()`, `files`, `next_file()`, `actions()`,
`reactions()`, `my_commands()`, `answer_to()`).
"""

import asyncio
import itertools
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Final

import msgspec
from aiohttp import web

from tests.kit.telegram_files import (
    UPLOAD_FIELDS,
    SendUpload,
    SentFile,
    media_fields,
    read_upload,
    sent_file,
)
from tests.kit.telegram_wire import (
    NOT_MODIFIED,
    AnswerCallbackQuery,
    BotApiError,
    CallbackAnswer,
    EditMessageText,
    SendChatAction,
    SendMessage,
    SentMessage,
    SetMessageReaction,
    SetMyCommands,
    checked,
    checked_buttons,
    checked_reactions,
    default_chat,
    keyboard_object,
)

_COMMAND: Final = re.compile(r"[a-z0-9_]{1,32}")  # what Telegram takes in a command menu
QUERY_TOO_OLD: Final = (
    "Bad Request: query is too old and response timeout expired or query ID is invalid"
)


class Outbox:
    """Every message, edit, upload, action, reaction, menu and callback answer of the bot."""

    def __init__(
        self, bot_id: int, chats: dict[int, dict[str, object]], message_ids: Iterator[int]
    ) -> None:
        self.bot_id = bot_id
        self.sent: list[SentMessage] = []
        self.files: list[SentFile] = []  # accepted uploads, in order
        self.answers: list[CallbackAnswer] = []
        self.commands: dict[str, list[tuple[str, str]]] = {}  # per scope type
        self.actions: list[tuple[int, str]] = []
        self.reactions: list[tuple[int, int, str]] = []  # chat, message, emoji
        self._chats = chats  # shared with the server, which learns them from users' messages
        self._message_ids = message_ids
        self._latest: dict[tuple[int, int], SentMessage] = {}
        self._untaken: list[int] = []  # indices into `sent` that next_sent has not returned
        self._files_taken = 0  # `files` that next_file has returned
        self._changed = asyncio.Event()
        self._open_queries: set[str] = set()  # callback queries not answered yet
        self._query_ids = itertools.count(4_200_000_000_000_000_001)  # as long as Telegram's

    # The methods.

    def send_message(self, params: SendMessage) -> dict[str, object]:
        sent = SentMessage(
            method="sendMessage",
            chat_id=params.chat_id,
            message_id=next(self._message_ids),
            text=params.text,
            entities=checked(params.text, params.entities),
            message_thread_id=params.message_thread_id,
            parse_mode=params.parse_mode,
            buttons=checked_buttons(params.reply_markup),
        )
        self._accept(sent)
        return self._text_message(sent)

    def edit_message_text(self, params: EditMessageText) -> dict[str, object]:
        entities = checked(params.text, params.entities)
        buttons = checked_buttons(params.reply_markup)
        earlier = self._latest.get((params.chat_id, params.message_id))
        if earlier is None:
            raise BotApiError(400, "Bad Request: message to edit not found")
        if (earlier.text, earlier.entities, earlier.buttons) == (params.text, entities, buttons):
            raise BotApiError(400, NOT_MODIFIED)
        edited = msgspec.structs.replace(
            earlier,
            method="editMessageText",
            text=params.text,
            entities=entities,
            parse_mode=params.parse_mode,
            buttons=buttons,
        )
        self._accept(edited)
        return self._text_message(edited) | {"edit_date": int(datetime.now(UTC).timestamp())}

    async def send_file(self, method: str, params: SendUpload, request: web.Request) -> object:
        upload = await read_upload(request, UPLOAD_FIELDS[method.lower()])
        sent = sent_file(method, params, upload, next(self._message_ids))
        self.files.append(sent)
        self._notify()
        message = self.bot_message(sent.chat_id, sent.message_id, sent.message_thread_id)
        return message | media_fields(sent)

    def send_chat_action(self, params: SendChatAction) -> bool:
        self.actions.append((params.chat_id, params.action))
        return True

    def set_message_reaction(self, params: SetMessageReaction) -> bool:
        """The message is not looked up (a test reacts to any id it likes; a missing message
        is a `fail_next`)."""
        for reaction in checked_reactions(params):
            self.reactions.append((params.chat_id, params.message_id, reaction.emoji))
        return True

    def set_my_commands(self, params: SetMyCommands) -> bool:
        if any(not _COMMAND.fullmatch(command.command) for command in params.commands):
            raise BotApiError(400, "Bad Request: BOT_COMMAND_INVALID")
        scope = params.scope.type if params.scope else "default"
        self.commands[scope] = [(c.command, c.description) for c in params.commands]
        return True

    def answer_callback_query(self, params: AnswerCallbackQuery) -> bool:
        """A query is answered once; another id, or a second answer, is refused as too old."""
        if params.callback_query_id not in self._open_queries:
            raise BotApiError(400, QUERY_TOO_OLD)
        self._open_queries.remove(params.callback_query_id)
        answer = CallbackAnswer(
            callback_query_id=params.callback_query_id,
            text=params.text,
            show_alert=params.show_alert,
        )
        self.answers.append(answer)
        return True

    def open_query(self, chat_id: int, message_id: int, data: str) -> tuple[str, dict[str, object]]:
        """A press of the button with callback `data` under a message of the bot: the callback
        query's id, which answerCallbackQuery then takes, and the message as it reads now."""
        sent = self._latest.get((chat_id, message_id))
        if sent is None:
            raise ValueError(f"the bot sent no message {message_id} to chat {chat_id}")
        if all(data != pressed for row in sent.buttons for _, pressed in row):
            raise ValueError(f"message {message_id} has no button with data {data!r}")
        query_id = str(next(self._query_ids))
        self._open_queries.add(query_id)
        return query_id, self._text_message(sent)

    # What tests read.

    def answer(self, query_id: str) -> CallbackAnswer | None:
        """The answer to a callback query, if the bot gave one."""
        return next((a for a in self.answers if a.callback_query_id == query_id), None)

    def message_object(self, chat_id: int, message_id: int) -> dict[str, object] | None:
        """The bot's text message as users see it now (edits applied), or None."""
        sent = self._latest.get((chat_id, message_id))
        return None if sent is None else self._text_message(sent)

    def transcript(self, chat_id: int) -> list[str]:
        """The bot's messages in a chat as the user sees them now (edits applied), oldest first."""
        mine = sorted((mid, sent) for (chat, mid), sent in self._latest.items() if chat == chat_id)
        return [sent.text for _, sent in mine]

    async def next_sent(self, chat_id: int | None, timeout_s: float) -> SentMessage:
        """The oldest accepted send or edit (to `chat_id`, if given) not yet returned here."""

        def untaken() -> int | None:
            for index in self._untaken:  # only what next_sent has not returned: a short list
                if chat_id in (None, self.sent[index].chat_id):
                    return index
            return None

        try:
            async with asyncio.timeout(timeout_s):
                while (index := untaken()) is None:
                    await self._changed.wait()
        except TimeoutError:
            where = "" if chat_id is None else f" to chat {chat_id}"
            raise AssertionError(f"nothing was sent{where} within {timeout_s} s") from None
        self._untaken.remove(index)
        return self.sent[index]

    async def next_file(self, timeout_s: float) -> SentFile:
        """The oldest accepted upload not yet returned here."""
        try:
            async with asyncio.timeout(timeout_s):
                while len(self.files) <= self._files_taken:
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(f"no file was sent within {timeout_s} s") from None
        self._files_taken += 1
        return self.files[self._files_taken - 1]

    def bot_message(
        self, chat_id: int, message_id: int, thread_id: int | None
    ) -> dict[str, object]:
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

    def _accept(self, sent: SentMessage) -> None:
        self._untaken.append(len(self.sent))
        self.sent.append(sent)
        self._latest[(sent.chat_id, sent.message_id)] = sent
        self._notify()

    def _notify(self) -> None:
        self._changed.set()  # wakes every waiting next_sent, next_file; later ones wait anew
        self._changed = asyncio.Event()

    def _text_message(self, sent: SentMessage) -> dict[str, object]:
        message = self.bot_message(sent.chat_id, sent.message_id, sent.message_thread_id)
        message["text"] = sent.text
        if sent.entities:
            message["entities"] = msgspec.to_builtins(sent.entities)
        if sent.buttons:
            message["reply_markup"] = keyboard_object(sent.buttons)
        return message
