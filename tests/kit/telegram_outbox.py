"""What the bot did on the test kit's Telegram server, and the methods by which it did it.

sendMessage (with an inline keyboard), editMessageText, deleteMessage, sendMessageDraft, the
uploads and sendMediaGroup albums, sendChatAction, setMessageReaction, setMyCommands and
answerCallbackQuery land here; tests read them back through `TelegramAPIServer` (`sent`,
`next_sent()`, `transcript()`, `drafts()`, `files`, `next_file()`, `actions()`,
`reactions()`, `my_commands()`, `answer_to()`).
"""

import asyncio
import itertools
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Final

import msgspec
from aiohttp import web

from tests.kit.telegram_files import (
    ALBUM_KINDS,
    MAX_ALBUM_ITEMS,
    UPLOAD_FIELDS,
    InputMedia,
    SendMediaGroup,
    SendUpload,
    SentFile,
    media_fields,
    read_album,
    read_upload,
    sent_file,
)
from tests.kit.telegram_wire import (
    NOT_MODIFIED,
    AnswerCallbackQuery,
    BotApiError,
    CallbackAnswer,
    EditMessageText,
    Entity,
    Params,
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
    typed,
)

# How delivery's progress panel reads when it is first sent (SPEC §12.6): working, or already in
# its end state when the turn ended before the panel's first send.
PANEL_STARTS: Final = (
    "⚙️ Working · ",
    "✅ Done · ",
    "❌ Failed · ",
    "⏹ Cancelled · ",
    "⏸ Stopped after ",
    "⚠️ Interrupted",
)
_COMMAND: Final = re.compile(r"[a-z0-9_]{1,32}")  # what Telegram takes in a command menu
QUERY_TOO_OLD: Final = (
    "Bad Request: query is too old and response timeout expired or query ID is invalid"
)


class SendMessageDraft(Params, frozen=True, kw_only=True):
    chat_id: int
    draft_id: int
    text: str = ""  # empty: Telegram shows a "Thinking…" placeholder
    entities: list[Entity] | None = None
    parse_mode: str | None = None
    message_thread_id: int | None = None


class DeleteMessage(Params, frozen=True, kw_only=True):
    chat_id: int
    message_id: int


class SentDraft(msgspec.Struct, frozen=True, kw_only=True):
    """A draft the bot streamed to a private chat: shown while written, never a message."""

    chat_id: int
    draft_id: int
    text: str
    entities: tuple[Entity, ...] = ()
    message_thread_id: int | None = None
    at_s: float  # on the clock of `TelegramAPIServer.send_times`


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
        self.drafts: list[SentDraft] = []
        self.deleted: list[tuple[int, int]] = []  # chat, message
        self._chats = chats  # shared with the server, which learns them from users' messages
        self._message_ids = message_ids
        self._latest: dict[tuple[int, int], SentMessage] = {}
        self._untaken: list[int] = []  # indices into `sent` that next_sent has not returned
        # Progress panels (PANEL_STARTS): with `hide_panels`, readers
        # see the chat as if the bot sent only its answers (tests written before panels).
        self.panels: set[tuple[int, int]] = set()
        self.hide_panels = False
        self._files_taken = 0  # `files` that next_file has returned
        self._changed = asyncio.Event()
        self._open_queries: set[str] = set()  # callback queries not answered yet
        self._query_ids = itertools.count(4_200_000_000_000_000_001)  # as long as Telegram's
        self._album_ids = itertools.count(13_900_000_000_000_000_001)  # media_group_id

    # The methods.

    def methods(
        self, clock: Callable[[], float]
    ) -> dict[str, Callable[[dict[str, object]], object]]:
        """The methods answered here, by lower-cased name; `clock` times drafts."""
        return {
            "sendmessage": lambda p: self.send_message(typed(p, SendMessage)),
            "editmessagetext": lambda p: self.edit_message_text(typed(p, EditMessageText)),
            "deletemessage": lambda p: self.delete_message(typed(p, DeleteMessage)),
            "sendmessagedraft": lambda p: self.send_message_draft(
                typed(p, SendMessageDraft), clock()
            ),
            "sendchataction": lambda p: self.send_chat_action(typed(p, SendChatAction)),
            "setmessagereaction": lambda p: self.set_message_reaction(typed(p, SetMessageReaction)),
            "answercallbackquery": lambda p: self.answer_callback_query(
                typed(p, AnswerCallbackQuery)
            ),
            "setmycommands": lambda p: self.set_my_commands(typed(p, SetMyCommands)),
        }

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

    def delete_message(self, params: DeleteMessage) -> bool:
        """The bot deletes one of its messages (text or file), which leaves the transcript."""
        key = (params.chat_id, params.message_id)
        is_file = any((sent.chat_id, sent.message_id) == key for sent in self.files)
        if key in self.deleted or (key not in self._latest and not is_file):
            raise BotApiError(400, "Bad Request: message to delete not found")
        self._latest.pop(key, None)
        self.deleted.append(key)
        return True

    def send_message_draft(self, params: SendMessageDraft, at_s: float) -> bool:
        """Drafts go to private chats only; a zero draft_id is refused as Telegram's servers do
        (it travels as the draft's random_id)."""
        entities = checked(params.text, params.entities) if params.text.strip() else ()
        if self.chat(params.chat_id)["type"] != "private":
            raise BotApiError(400, "Bad Request: TEXTDRAFT_PEER_INVALID")
        if params.draft_id == 0:
            raise BotApiError(400, "Bad Request: RANDOM_ID_INVALID")
        draft = SentDraft(
            chat_id=params.chat_id,
            draft_id=params.draft_id,
            text=params.text,
            entities=entities,
            message_thread_id=params.message_thread_id,
            at_s=at_s,
        )
        self.drafts.append(draft)
        return True

    async def send_file(self, method: str, params: SendUpload, request: web.Request) -> object:
        kind = UPLOAD_FIELDS[method.lower()]
        upload = await read_upload(request, kind)
        sent = sent_file(method, kind, params, upload, next(self._message_ids))
        self.files.append(sent)
        self._notify()
        return self._file_message(sent)

    async def send_media_group(self, params: SendMediaGroup, request: web.Request) -> object:
        """Every item is checked before any is sent; a lone item goes as a plain message, as
        Telegram sends it, outside any album."""
        media = checked_album(params.media)
        uploads = await read_album(request, media)
        group = str(next(self._album_ids)) if len(media) > 1 else None
        album: list[SentFile] = []
        for item, upload in zip(media, uploads, strict=True):
            one = SendUpload(
                chat_id=params.chat_id,
                caption=item.caption,
                caption_entities=item.caption_entities,
                parse_mode=item.parse_mode,
                message_thread_id=params.message_thread_id,
            )
            sent = sent_file("sendMediaGroup", item.type, one, upload, next(self._message_ids))
            album.append(msgspec.structs.replace(sent, media_group=group))
        self.files.extend(album)
        self._notify()
        return [self._file_message(sent) for sent in album]

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
        mine = sorted(
            (mid, sent)
            for (chat, mid), sent in self._latest.items()
            if chat == chat_id and not self._hidden(chat, mid)
        )
        return [sent.text for _, sent in mine]

    def _hidden(self, chat_id: int, message_id: int) -> bool:
        return self.hide_panels and (chat_id, message_id) in self.panels

    async def next_sent(self, chat_id: int | None, timeout_s: float) -> SentMessage:
        """The oldest accepted send or edit (to `chat_id`, if given) not yet returned here."""

        def untaken() -> int | None:
            for index in list(self._untaken):  # only what next_sent has not returned: short
                sent = self.sent[index]
                if self._hidden(sent.chat_id, sent.message_id):
                    self._untaken.remove(index)
                elif chat_id in (None, sent.chat_id):
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

    def chat(self, chat_id: int) -> dict[str, object]:
        """The chat as users' messages showed it, else as its id suggests."""
        return self._chats.get(chat_id) or default_chat(chat_id)

    def bot_message(
        self, chat_id: int, message_id: int, thread_id: int | None
    ) -> dict[str, object]:
        """A Message from the bot, without its content."""
        message: dict[str, object] = {
            "message_id": message_id,
            "from": {"id": self.bot_id, "is_bot": True, "first_name": "Stellaclaw"},
            "chat": self.chat(chat_id),
            "date": int(datetime.now(UTC).timestamp()),
        }
        if thread_id is not None:
            message |= {"message_thread_id": thread_id, "is_topic_message": True}
        return message

    def _accept(self, sent: SentMessage) -> None:
        if sent.method == "sendMessage" and sent.text.startswith(PANEL_STARTS):
            self.panels.add((sent.chat_id, sent.message_id))
        self._untaken.append(len(self.sent))
        self.sent.append(sent)
        self._latest[(sent.chat_id, sent.message_id)] = sent
        self._notify()

    def _notify(self) -> None:
        self._changed.set()  # wakes every waiting next_sent, next_file; later ones wait anew
        self._changed = asyncio.Event()

    def _file_message(self, sent: SentFile) -> dict[str, object]:
        message = self.bot_message(sent.chat_id, sent.message_id, sent.message_thread_id)
        return message | media_fields(sent)

    def _text_message(self, sent: SentMessage) -> dict[str, object]:
        message = self.bot_message(sent.chat_id, sent.message_id, sent.message_thread_id)
        message["text"] = sent.text
        if sent.entities:
            message["entities"] = msgspec.to_builtins(sent.entities)
        if sent.buttons:
            message["reply_markup"] = keyboard_object(sent.buttons)
        return message


def checked_album(media: list[InputMedia] | None) -> list[InputMedia]:
    """Telegram's checks on an album's items (TDLib's check_message_group_message_contents)."""
    if media is None:
        raise BotApiError(400, 'Bad Request: parameter "media" is required')
    for item in media:
        if item.type not in ALBUM_KINDS:
            why = (
                "can't be used in sendMediaGroup" if item.type == "animation" else "is unsupported"
            )
            raise BotApiError(
                400, f'Bad Request: can\'t parse InputMedia: type "{item.type}" {why}'
            )
    if not media:
        raise BotApiError(400, "Bad Request: there are no messages to send")
    if len(media) > MAX_ALBUM_ITEMS:
        raise BotApiError(400, "Bad Request: too many messages to send as an album")
    kinds = {item.type for item in media}
    for alone in ("audio", "document"):  # photos and videos mix; these only with their own kind
        if alone in kinds and len(kinds) > 1:
            raise BotApiError(400, f"Bad Request: {alone} can't be mixed with other media types")
    return media
